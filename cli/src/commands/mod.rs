//! One module per `vigil` subcommand.

pub mod audit;
pub mod demo;
pub mod dlq;
pub mod keys;
pub mod produce;
pub mod rules;
pub mod run;
pub mod topology;
