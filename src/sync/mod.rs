//! Generic concurrency helpers shared by refreshing, migration and login:
//! one execution per key at a time, and fixed-window counters. They know
//! nothing of logins or providers.

mod single_flight;
mod window;

pub use single_flight::SingleFlight;
pub use window::WindowLimiter;
