//! Integration tests of the admin API: the real server on port 0, against the real Redis and
//! RabbitMQ (`SWITCHBOARD_REDIS_URL`, `SWITCHBOARD_AMQP_URL`), each test in its own random
//! namespace, cleaned up when done.

mod access;
mod helpers;
mod rights;
