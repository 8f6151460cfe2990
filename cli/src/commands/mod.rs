//! One module per `vigil` subcommand.

pub mod audit;
pub mod dlq;
pub mod keys;
pub mod produce;
pub mod run;
pub mod topology;
