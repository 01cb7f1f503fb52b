//! One file per scenario, each a method of `Env`.

mod chat;
mod idle;
mod storm;
