//! Generic concurrency helpers shared by refreshing, migration and login:
//! one execution per key at a time, one holder per key (a lock in this
//! process), fixed-window counters (and those of client addresses, grouped
//! as one client), and a bounded pool of work that waits on a dependency. They know nothing of logins or providers.

mod address;
mod keyed_lock;
mod single_flight;
mod window;

pub use address::{AddressLimiter, DEFAULT_IPV6_PREFIX, address_group};
pub use keyed_lock::{KeyedGuard, KeyedLock};
pub use single_flight::SingleFlight;
pub use window::WindowLimiter;
