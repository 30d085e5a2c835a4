//! The plain-GET benchmark for Goose: one transaction, GET /. Run by bench/run.sh, pinned to
//! one core, with `--host http://127.0.0.1:PORT/ --users 64 --increase-rate 6400
//! --run-time 10s --no-reset-metrics --quiet --report-file FILE.json`.

use goose::prelude::*;

async fn get_root(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    GooseAttack::initialize()?
        .register_scenario(scenario!("plain").register_transaction(transaction!(get_root)))
        .execute()
        .await?;
    Ok(())
}
