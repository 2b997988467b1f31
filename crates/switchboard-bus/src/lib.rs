//! The RabbitMQ bus: the only crate that talks to lapin.
//!
//! * [`topology`]: every exchange and queue, declared idempotently by every role at start-up
//!   and after every reconnect;
//! * [`Bus`]: one AMQP connection per process (lapin runs one thread per connection), lazily
//!   re-established after a failure; confirmed publishing (every publish awaits the broker's
//!   confirm, a nack or an unroutable return is an error);
//! * [`consume`]: a supervised consumer loop with manual acks, a bounded number of handlers in
//!   flight, reconnection with backoff, and a drain on shutdown;
//! * [`headers`]: string message headers (trace context, dead-letter metadata).

mod connection;
pub mod consume;
mod error;
pub mod headers;
mod inspect;
pub mod parked;
mod publish;
pub mod topology;

pub use connection::{Bus, BusOptions};
pub use consume::{ConsumerConfig, Delivery};
pub use error::BusError;
pub use headers::Headers;
pub use publish::Outgoing;
pub use topology::Topology;
