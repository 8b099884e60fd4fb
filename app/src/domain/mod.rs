//! Pure domain rules shared by the server and the browser: typed identifiers, money, themes, a driver's charge plan.
//! Nothing here does I/O.

pub mod ids;
pub mod money;
pub mod plan;
pub mod tariff;
pub mod theme;

pub use ids::*;
pub use money::*;
pub use plan::*;
pub use tariff::*;
pub use theme::*;
