//! One module per `vigil` subcommand.

pub mod produce;
pub mod topology;
