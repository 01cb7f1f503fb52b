//! One file per scenario, each a method of `Env`.

mod chat;
mod idle;
pub(crate) mod load;
mod storm;
