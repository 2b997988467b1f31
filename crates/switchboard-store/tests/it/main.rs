//! Integration tests of the store against a real Redis (`SWITCHBOARD_REDIS_URL`, default
//! `redis://127.0.0.1:6379/0`). The server is shared: every test works in its own random
//! namespace and deletes its keys when done (even when it fails).

mod claims;
mod connect;
mod context;
mod conversation;
mod helpers;
mod statuses;
mod subject;
