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

use proc_macro2::{Group, Span, TokenStream, TokenTree};

/// Gives every token of `tokens` the span `span`, so a diagnostic about the
/// generated code (a failed compile-time check, a missing trait) is shown
/// on the user's token instead of on the derive.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(g) => {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                TokenTree::Group(group)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}
