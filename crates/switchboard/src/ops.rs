//! Operator commands: the dead-letter queue and tenant pauses.

use switchboard_bus::{headers::names, parked::Filter, Bus};
use switchboard_store::Store;

/// Which parking queue a `dlq` command works on.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Parking {
    /// Dead letters (`{ns}.dlq`).
    Dlq,
    /// Signed webhook bodies that could not be read (`{ns}.rejected`).
    Rejected,
    /// Replies of paused tenants (`{ns}.held`).
    Held,
}

#[derive(Debug, clap::Args)]
pub struct Selection {
    /// The queue to work on.
    #[arg(long, value_enum, default_value = "dlq")]
    pub queue: Parking,
    /// Only messages dead-lettered for this reason (e.g. send_permanent, llm_failed).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only messages of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// One line per message: position, reason, tenant, error code, attempts, source, time.
    List {
        #[command(flatten)]
        selection: Selection,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Headers and body of the message at POSITION (as numbered by `list`). Text and phone
    /// numbers in the body are masked unless --reveal is given.
    Show {
        position: usize,
        #[command(flatten)]
        selection: Selection,
        #[arg(long)]
        reveal: bool,
    },
    /// Send the selected messages back to the queue they came from. Safe: a reply already sent
    /// is not sent again (send ledger), a message already answered is not answered again.
    Redrive {
        #[command(flatten)]
        selection: Selection,
    },
    /// Delete the selected messages.
    Purge {
        #[command(flatten)]
        selection: Selection,
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Stop sending the tenant's replies (they wait in the held queue).
    Pause {
        tenant: String,
        #[arg(long, default_value = "operator")]
        reason: String,
    },
    /// Resume sending and release the tenant's held replies.
    Resume { tenant: String },
}

fn queue_name(bus: &Bus, q: Parking) -> String {
    let t = bus.topology();
    match q {
        Parking::Dlq => t.dlq.clone(),
        Parking::Rejected => t.rejected.clone(),
        Parking::Held => t.held.clone(),
    }
}

fn filter(s: &Selection) -> Filter {
    Filter { reason: s.reason.clone(), tenant: s.tenant.clone() }
}

pub async fn dlq(bus: &Bus, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { selection, limit } => {
            let queue = queue_name(bus, selection.queue);
            let found = bus.peek(&queue, &filter(&selection), limit).await?;
            println!(
                "{:>5}  {:<24} {:<12} {:>7} {:>8}  {:<28} dead-lettered at",
                "pos", "reason", "tenant", "code", "attempts", "source"
            );
            for m in &found {
                let h = |k: &str| m.headers.get(k).map(String::as_str).unwrap_or("-");
                println!(
                    "{:>5}  {:<24} {:<12} {:>7} {:>8}  {:<28} {}",
                    m.position,
                    switchboard_bus::parked::reason(&m.headers).unwrap_or("-"),
                    h(names::TENANT),
                    h(names::ERROR_CODE),
                    h(names::ATTEMPTS),
                    h(names::SOURCE_QUEUE),
                    h(names::DEAD_LETTERED_AT).parse::<i64>().map(format_ms).unwrap_or_else(|_| "-".into()),
                );
            }
            println!("{} message(s)", found.len());
        }
        DlqCommand::Show { position, selection, reveal } => {
            let queue = queue_name(bus, selection.queue);
            let found = bus.peek(&queue, &filter(&selection), position).await?;
            let Some(m) = found.into_iter().find(|m| m.position == position) else {
                anyhow::bail!("no message at position {position}");
            };
            for (k, v) in &m.headers {
                println!("{k}: {v}");
            }
            println!();
            match serde_json::from_slice::<serde_json::Value>(&m.body) {
                Ok(mut body) => {
                    if !reveal {
                        mask(&mut body);
                    }
                    println!("{}", serde_json::to_string_pretty(&body)?);
                }
                Err(_) if reveal => println!("{}", String::from_utf8_lossy(&m.body)),
                Err(_) => println!("({} bytes, not JSON; --reveal prints them)", m.body.len()),
            }
        }
        DlqCommand::Redrive { selection } => {
            anyhow::ensure!(
                !matches!(selection.queue, Parking::Rejected),
                "rejected webhook bodies cannot be redriven: inspect them with `dlq show --queue rejected --reveal`, fix the \
                 cause, and let Meta resend (or POST them to the webhook again)"
            );
            let queue = queue_name(bus, selection.queue);
            let n = bus.redrive(&queue, &filter(&selection)).await?;
            println!("redrove {n} message(s)");
        }
        DlqCommand::Purge { selection, yes } => {
            anyhow::ensure!(yes, "purging cannot be undone: add --yes");
            let queue = queue_name(bus, selection.queue);
            let n = bus.purge_matching(&queue, &filter(&selection)).await?;
            println!("purged {n} message(s)");
        }
    }
    Ok(())
}

pub async fn tenant(bus: &Bus, store: &Store, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Pause { tenant, reason } => {
            store.pause_tenant(&tenant, &reason).await?;
            println!("tenant {tenant} paused");
        }
        TenantCommand::Resume { tenant } => {
            let n = switchboard_dispatcher::resume_tenant(bus, store, &tenant).await.map_err(|e| anyhow::anyhow!(e))?;
            println!("tenant {tenant} resumed; {n} held repl(ies) released");
        }
    }
    Ok(())
}

/// Masks message text and identities in a parked JSON body.
fn mask(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if matches!(
                    k.as_str(),
                    "body"
                        | "content"
                        | "wa_id"
                        | "user_id"
                        | "from"
                        | "to"
                        | "recipient_id"
                        | "wamid"
                        | "wamids"
                        | "in_reply_to"
                        | "id"
                        | "name"
                        | "profile"
                        | "trace"
                ) {
                    if !val.is_null() {
                        *val = serde_json::Value::String("[masked]".into());
                    }
                } else {
                    mask(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}
