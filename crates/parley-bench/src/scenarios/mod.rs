//! One file per scenario, each a method of `Env`.

mod chaos;
mod chat;
mod idle;
pub(crate) mod load;
mod search;
mod sharding;
mod storm;
