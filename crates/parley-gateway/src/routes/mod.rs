pub mod conversations;
pub mod health;
pub mod infobases;
pub mod me;
pub mod registration;
