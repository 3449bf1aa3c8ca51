//! Real `kubectl` command lines and API request targets, and properties over arbitrary input.

use super::*;

mod api;
mod fuzz;
mod kubectl;
