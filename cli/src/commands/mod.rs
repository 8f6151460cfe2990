//! One module per `vigil` subcommand.

pub mod topology;
