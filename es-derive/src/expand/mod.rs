//! Code generation: one file per derive, plus the registry submission.
//!
//! Every path in the output goes through `#krate` (`::es_core` or the user's
//! `crate = "..."`), prelude items through `#krate::__private`, and impls are
//! wrapped in `const _: () = { ... };` so nothing leaks into the user's
//! namespace except the generated event enum.

pub(crate) mod aggregate;
pub(crate) mod event;
mod register;

#[cfg(test)]
mod tests;
