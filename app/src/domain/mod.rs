//! Pure domain rules shared by the server and the browser: typed identifiers, money, themes, a driver's charge plan.
//! Nothing here does I/O.

pub mod access;
pub mod ids;
pub mod money;
pub mod plan;
pub mod presence;
pub mod tariff;
pub mod theme;

pub use access::*;
pub use ids::*;
pub use money::*;
pub use plan::*;
pub use presence::*;
pub use tariff::*;
pub use theme::*;
