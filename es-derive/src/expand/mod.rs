//! Code generation: one file per derive, plus what aggregates and projections
//! share (`event_enum`) and the registry submission.
//!
//! Every path in the output goes through `#krate` (`::es_core` or the user's
//! `crate = "..."`), prelude items through `#krate::__private`, and impls are
//! wrapped in `const _: () = { ... };` so nothing leaks into the user's
//! namespace except the generated event enum.

pub(crate) mod aggregate;
pub(crate) mod event;
pub(crate) mod event_enum;
pub(crate) mod projection;
mod register;

#[cfg(test)]
mod tests;

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::Path;

use crate::ast::Name;

/// `const _: () = check_*_name("...");`: es-core's name rule, evaluated at
/// compile time and reported on the user's `name = "..."` (or the type).
pub(crate) fn name_check(krate: &Path, check: &str, name: &Name) -> TokenStream {
    let check = Ident::new(check, Span::call_site());
    let value = &name.value;
    respan(
        quote!(const _: () = #krate::__private::#check(#value);),
        name.span,
    )
}

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

/// Spans `tokens`, generated code that checks the user's `path`, so that
/// rustc's span of the expression they form is the whole path: the first
/// token at the path's first token, every other token at its last (rustc
/// spans an expression from its first token to its last). [`respan`] with
/// one span would underline only the first segment of `events::Closed`.
pub(crate) fn respan_path(tokens: TokenStream, path: &Path) -> TokenStream {
    let (first, last) = path_ends(path);
    let mut trees = tokens.into_iter();
    let head = trees.next().map(|tree| respan(tree.into(), first));
    head.into_iter()
        .flatten()
        .chain(trees.flat_map(|tree| respan(tree.into(), last)))
        .collect()
}

/// `before`, the user's `path` with its own spans, then `after`, spanned as
/// [`respan_path`] does: an expression like `Apply::<events::Closed>::apply(..)`
/// is then reported on the whole path, with no label left on the derive.
pub(crate) fn around_path(before: TokenStream, path: &Path, after: TokenStream) -> TokenStream {
    let (_, last) = path_ends(path);
    let mut tokens = respan_path(before, path);
    tokens.extend(path.to_token_stream());
    tokens.extend(respan(after, last));
    tokens
}

/// The spans of the first and the last token of `path` (its last
/// identifier: generic arguments are refused anyway).
pub(crate) fn path_ends(path: &Path) -> (Span, Span) {
    let first = path.leading_colon.map_or_else(
        || {
            path.segments
                .first()
                .map_or_else(Span::call_site, |s| s.ident.span())
        },
        |colon| colon.spans[0],
    );
    let last = path.segments.last().map_or(first, |s| s.ident.span());
    (first, last)
}
