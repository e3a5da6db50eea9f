//! `#[derive(Projection)]`: the event enum, `From` for each event and the
//! `EventSet` codec (from [`event_enum`], shared with aggregates),
//! `Projection` (with `AGGREGATES` for `aggregates(...)`), and the dispatch:
//! `Apply<Enum>` for a per-stream projection, `Dispatch<Cx>` for a read
//! model with `context = Cx`.
//!
//! Nothing is registered: a projection is run by name by the code that
//! builds it, not found in the registry.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{DeriveInput, Path};

use super::{around_path, event_enum, name_check, path_ends, respan, respan_path};
use crate::ast::{EventRef, ProjectionInput};
use crate::ctxt::Ctxt;
use crate::fallback::{self, Invalid};
use crate::validate;

/// The expansion, or the errors and the stub emitted beside them.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    try_expand(input).unwrap_or_else(Invalid::into_tokens)
}

pub(crate) fn try_expand(input: &DeriveInput) -> Result<TokenStream, Invalid> {
    let cx = Ctxt::new();
    let projection = ProjectionInput::from_syn(&cx, input);
    validate::projection(&cx, &projection);
    match cx.check() {
        Ok(()) => Ok(expand(&projection)),
        Err(errors) => Err(Invalid {
            errors,
            stub: fallback::projection(&projection),
        }),
    }
}

fn expand(projection: &ProjectionInput<'_>) -> TokenStream {
    let ProjectionInput {
        ident,
        name,
        version,
        events,
        krate,
        ..
    } = projection;
    let listed: Vec<&EventRef> = events.listed().iter().collect();
    let definition = event_enum::definition(events, krate, &listed);
    let from_impls = event_enum::from_impls(events, krate, &listed);
    let event_set = event_enum::event_set(events, krate);
    let dispatch = match &projection.context {
        None => event_enum::apply(events, krate),
        Some(context) => dispatch(projection, context),
    };
    let enum_ident = &events.ident;
    let (name_value, version) = (&name.value, version.number);
    let distinct = event_enum::distinct_names(events, krate);
    let aggregates = aggregates(projection);
    let distinct_aggregates = distinct_aggregates(projection);
    let name_check = name_check(krate, "check_projection_name", name);

    quote! {
        #definition

        #[doc(hidden)]
        #[allow(unused_qualifications)]
        const _: () = {
            #from_impls
            #event_set

            #[automatically_derived]
            impl #krate::Projection for #ident {
                type Event = #enum_ident;
                const NAME: &'static str = #name_value;
                const VERSION: u32 = #version;
                #aggregates
            }

            #dispatch
            #distinct
            #distinct_aggregates
            #name_check
        };
    }
}

/// `const AGGREGATES`: the stored name of each type of `aggregates(...)`,
/// `<Lead as Aggregate>::NAME`, spanned over its path (as `EventKey::of` is
/// for events), so "not an aggregate" is reported on the user's token.
/// Nothing without `aggregates(...)`: the trait's default, any aggregate.
pub(crate) fn aggregates(projection: &ProjectionInput<'_>) -> TokenStream {
    let Some(aggregates) = &projection.aggregates else {
        return TokenStream::new();
    };
    let krate = &projection.krate;
    let names = aggregates
        .paths
        .iter()
        .map(|path| around_path(quote!(<), path, quote!(as #krate::Aggregate>::NAME)));
    quote! {
        const AGGREGATES: &'static [&'static str] = &[#(#names),*];
    }
}

/// `const _: () = check_distinct_aggregates(...)`: one type listed under two
/// paths (or two types with one stored name), which `validate` cannot see.
/// Reported on the `aggregates` key.
fn distinct_aggregates(projection: &ProjectionInput<'_>) -> TokenStream {
    let ProjectionInput { ident, krate, .. } = projection;
    let Some(aggregates) = &projection.aggregates else {
        return TokenStream::new();
    };
    respan(
        quote!(const _: () = #krate::__private::check_distinct_aggregates(<#ident as #krate::Projection>::AGGREGATES);),
        aggregates.span,
    )
}

/// `impl Dispatch<Cx>`: each variant, in its envelope, to the type's
/// `Handle<E, Cx>`.
fn dispatch(projection: &ProjectionInput<'_>, context: &Path) -> TokenStream {
    let ProjectionInput {
        ident,
        events,
        krate,
        ..
    } = projection;
    let private = quote!(#krate::__private);
    let enum_ident = &events.ident;
    let arms = events.listed().iter().map(|e| {
        let (path, variant) = (&e.path, &e.variant);
        let call = handle_call(krate, path, context);
        quote!(#enum_ident::#variant(e) => #call,)
    });
    quote! {
        #[automatically_derived]
        impl #krate::Dispatch<#context> for #ident {
            fn dispatch(
                &mut self,
                cx: &#context,
                event: #krate::Envelope<#enum_ident>,
            ) -> #private::Result<(), #krate::BoxError> {
                let (envelope, event) = #krate::Envelope::split(event);
                match event {
                    #(#arms)*
                }
            }
        }
    }
}

/// `<Self as Handle<E, Cx>>::handle(self, cx, &envelope.with_event(e))`,
/// spanned over the event's path as [`super::around_path`] does: rustc
/// reports a missing `Handle<E, Cx>` at the trait's segment, which is then
/// the event's type name in `events(...)` (as for a missing `Apply<E>`).
/// The context keeps its own spans, so a context that does not resolve is
/// reported on `context = ...`.
fn handle_call(krate: &Path, path: &Path, context: &Path) -> TokenStream {
    let (_, last) = path_ends(path);
    let mut tokens = respan_path(quote!(<Self as #krate::Handle<), path);
    tokens.extend(path.to_token_stream());
    tokens.extend(respan(quote!(,), last));
    tokens.extend(context.to_token_stream());
    tokens.extend(respan(
        quote!(>>::handle(self, cx, &#krate::Envelope::with_event(envelope, e))),
        last,
    ));
    tokens
}
