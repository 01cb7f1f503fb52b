pub mod conversations;
pub mod files;
pub mod health;
pub mod hooks;
pub mod infobases;
pub mod me;
pub mod registration;
pub mod web;
