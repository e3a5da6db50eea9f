//! `#[derive(Aggregate)]`: the event enum, `From` for each event, the
//! `EventSet` codec and the `Apply` dispatch (from [`event_enum`], shared
//! with projections), `Aggregate`, `IntoEvents` for each event, and the
//! registration.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use super::{event_enum, name_check, register, respan, respan_path};
use crate::ast::{AggregateInput, EventRef};
use crate::ctxt::Ctxt;
use crate::fallback::{self, Invalid};
use crate::validate;

/// The expansion, or the errors and the stub emitted beside them.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    try_expand(input).unwrap_or_else(Invalid::into_tokens)
}

pub(crate) fn try_expand(input: &DeriveInput) -> Result<TokenStream, Invalid> {
    let cx = Ctxt::new();
    let aggregate = AggregateInput::from_syn(&cx, input);
    validate::aggregate(&cx, &aggregate);
    match cx.check() {
        Ok(()) => Ok(expand(&aggregate)),
        Err(errors) => Err(Invalid {
            errors,
            stub: fallback::aggregate(&aggregate),
        }),
    }
}

/// `From<E>` into the enum for each event and, when `into_events`,
/// `IntoEvents<Aggregate>` for each event and for the enum.
pub(crate) fn conversions(
    aggregate: &AggregateInput<'_>,
    events: &[&EventRef],
    into_events: bool,
) -> TokenStream {
    let AggregateInput { ident, krate, .. } = aggregate;
    let private = quote!(#krate::__private);
    let into = |ty: &dyn quote::ToTokens| {
        into_events.then(|| {
            quote! {
                #[automatically_derived]
                impl #krate::IntoEvents<#ident> for #ty {
                    type Error = #private::Infallible;
                    fn into_events(self) -> #private::Events<#ident> {
                        #private::one::<#ident>(self)
                    }
                }
            }
        })
    };
    let per_event = events.iter().map(|e| {
        let from = event_enum::from_impl(&aggregate.events, krate, e);
        let into = into(&e.path);
        quote! {
            #from
            #into
        }
    });
    let into_enum = into(&aggregate.events.ident);
    quote! {
        #(#per_event)*
        #into_enum
    }
}

fn expand(aggregate: &AggregateInput<'_>) -> TokenStream {
    let AggregateInput {
        ident,
        name,
        events,
        krate,
        ..
    } = aggregate;
    let listed: Vec<&EventRef> = events.listed().iter().collect();
    let definition = event_enum::definition(events, krate, &listed);
    let conversions = conversions(aggregate, &listed, true);
    let event_set = event_enum::event_set(events, krate);
    let apply = event_enum::apply(events, krate);
    let enum_ident = &events.ident;
    let name_value = &name.value;
    let snapshot = snapshot_items(aggregate);
    let conflicts = conflicts_fn(aggregate);
    let registration = register::aggregate(krate, ident);
    let distinct = event_enum::distinct_names(events, krate);
    let name_check = name_check(krate, "check_aggregate_name", name);

    quote! {
        #definition

        #[doc(hidden)]
        #[allow(unused_qualifications)]
        const _: () = {
            #conversions
            #event_set
            #apply

            #[automatically_derived]
            impl #krate::Aggregate for #ident {
                type Event = #enum_ident;
                const NAME: &'static str = #name_value;
                #snapshot
                #conflicts
            }

            #distinct
            #name_check
            #registration
        };
    }
}

/// `snapshot(...)`: the policy and the snapshot codec.
fn snapshot_items(aggregate: &AggregateInput<'_>) -> Option<TokenStream> {
    let krate = &aggregate.krate;
    let private = quote!(#krate::__private);
    aggregate.snapshot.as_ref().map(|s| {
        let every = s.every.map_or(1, |every| every.value);
        let version = s.version.number;
        // Respanned at `snapshot(...)`: a state that is not `Serialize` or
        // `Deserialize` is reported there.
        let encode = respan(quote!(#private::encode_snapshot(self)), s.span);
        let decode = respan(quote!(#private::decode_snapshot(bytes)), s.span);
        quote! {
            const SNAPSHOT: #private::Option<#krate::SnapshotPolicy> =
                #private::Some(#krate::SnapshotPolicy { every: #every, version: #version });

            fn encode_snapshot(&self) -> #private::EncodedSnapshot {
                #private::Some(#encode)
            }

            fn decode_snapshot(bytes: &[u8]) -> #private::DecodedSnapshot<Self> {
                #private::Some(#decode)
            }
        }
    })
}

/// `conflicts = path`: `Aggregate::conflicts` calls the user's function.
fn conflicts_fn(aggregate: &AggregateInput<'_>) -> Option<TokenStream> {
    let enum_ident = &aggregate.events.ident;
    aggregate.conflicts.as_ref().map(|f| {
        // The user's path is first coerced to the expected signature (spanned
        // over the path), so a function of another type is reported on it as
        // "expected fn pointer `fn(&[ThingEvent], &[ThingEvent]) -> bool`".
        let signature = respan_path(quote!(fn(&[#enum_ident], &[#enum_ident]) -> bool), f);
        quote! {
            fn conflicts(ours: &[#enum_ident], theirs: &[#enum_ident]) -> bool {
                let __es_conflicts: #signature = #f;
                __es_conflicts(ours, theirs)
            }
        }
    })
}
