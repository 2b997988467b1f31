//! Integration tests: the real roles in-process, against the real RabbitMQ and Redis of this
//! machine (each test in its own namespace), with the Graph API and the LLM faked by HTTP
//! servers speaking their protocols.

mod delivery;
mod dispatch;
mod faults;
mod ingress;
mod observability;
mod pipeline;
mod sequencing;
mod tenants;

use std::time::Duration;

/// Generous deadline for end-to-end polling on a shared, 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);
