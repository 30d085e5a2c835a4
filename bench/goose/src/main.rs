//! The plain-GET benchmark for Goose: one transaction, GET /. Run by bench/run.sh with
//! `--host http://127.0.0.1:PORT --users 64 --hatch-rate 64 --run-time 10s`.

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
