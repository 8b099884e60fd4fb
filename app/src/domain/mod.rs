//! Pure domain rules shared by the server and the browser: typed identifiers, money, themes.
//! Nothing here does I/O.

pub mod ids;
pub mod money;
pub mod tariff;
pub mod theme;

pub use ids::*;
pub use money::*;
pub use tariff::*;
pub use theme::*;
