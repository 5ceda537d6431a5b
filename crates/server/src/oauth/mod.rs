//! OAuth connections: the providers an operator configured, and the tokens of each connection
//! (the connect flow itself is in `api::oauth`).

pub mod providers;
pub mod tokens;
