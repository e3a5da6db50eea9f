//! What is emitted next to the errors of an invalid input: stub impls, so
//! the user's code that names the type adds no errors of its own and the
//! user sees the attribute's error alone (thiserror's `fallback.rs`).
//!
//! The stubs never run: the build already fails. Their bodies are
//! `unreachable!()`, the only place the derives emit it.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Data, DeriveInput, Path};

use crate::ast::{AggregateInput, EventEnum, EventInput, EventRef, ProjectionInput};
use crate::expand::aggregate::conversions;
use crate::expand::{event_enum, name_check, projection::aggregates};

/// An input the derive refuses: every error, and the stub emitted beside
/// them.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) errors: syn::Error,
    pub(crate) stub: TokenStream,
}

impl Invalid {
    /// The `compile_error!`s, then the stub.
    pub(crate) fn into_tokens(self) -> TokenStream {
        let mut tokens = self.errors.into_compile_error();
        tokens.extend(self.stub);
        tokens
    }
}

/// A stub `impl Event`, with the name and version as parsed.
pub(crate) fn event(event: &EventInput<'_>) -> TokenStream {
    let EventInput {
        original,
        ident,
        name,
        version,
        krate,
        ..
    } = event;
    let private = quote!(#krate::__private);
    let (impl_generics, ty_generics, _) = original.generics.split_for_impl();
    let where_clause = where_clause(
        original,
        &quote! {
            #private::serde::Serialize + #private::serde::de::DeserializeOwned
                + #private::Send + #private::Sync + 'static
        },
    );
    let (name_value, version) = (&name.value, version.number);
    // The name is checked here too: a bad name is an error of its own, not
    // a consequence of the others, so it is reported in the same build.
    let name_check = name_check(krate, "check_event_name", name);
    quote! {
        #[doc(hidden)]
        #[allow(unused_qualifications)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::Event for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name_value;
                const VERSION: u32 = #version;

                fn decode(_: u32, _: &str) -> #private::Result<Self, #krate::DecodeError> {
                    #private::unreachable!()
                }
            }

            #name_check
        };
    }
}

/// The event enum with every listed event that can be a variant, their
/// `From` (and `IntoEvents`) impls, and stub `EventSet`, `Apply<Enum>` and
/// `Aggregate` impls: code naming `ThingEvent`, `Repository::<Thing, _>` or
/// `impl Apply<E> for Thing` then compiles as it will once the input is
/// fixed.
pub(crate) fn aggregate(aggregate: &AggregateInput<'_>) -> TokenStream {
    let AggregateInput {
        original,
        ident,
        name,
        events,
        krate,
        ..
    } = aggregate;
    let private = quote!(#krate::__private);
    let usable = usable_events(events.listed());
    let definition = event_enum::definition(events, krate, &usable);
    // `IntoEvents<Thing>` needs `Thing: Aggregate`, which a type that needs
    // the workaround bound may not have: skip them there.
    let conversions = conversions(aggregate, &usable, !needs_workaround(original));
    let event_set = event_set(events, krate);
    let apply = apply(original, events, krate);
    let (impl_generics, ty_generics, _) = original.generics.split_for_impl();
    let aggregate_where = where_clause(
        original,
        &quote!(#private::Default + #private::Send + #private::Sync + 'static),
    );
    let enum_ident = &events.ident;
    let name_value = &name.value;
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
            impl #impl_generics #krate::Aggregate for #ident #ty_generics #aggregate_where {
                type Event = #enum_ident;
                const NAME: &'static str = #name_value;
            }

            #name_check
        };
    }
}

/// The event enum with every listed event that can be a variant, their
/// `From` impls, and stub `EventSet`, `Projection` and `Apply<Enum>` (or,
/// with `context = Cx`, `Dispatch<Cx>`) impls: code naming `ViewEvent`,
/// `project::<View, _>` or `impl Handle<E, Cx> for View` then compiles as it
/// will once the input is fixed. The stub `Projection` has the real
/// `AGGREGATES`: a listed type that is not an aggregate is an error of its
/// own, reported in the same build (as a bad name is).
pub(crate) fn projection(projection: &ProjectionInput<'_>) -> TokenStream {
    let ProjectionInput {
        original,
        ident,
        name,
        version,
        events,
        context,
        krate,
        ..
    } = projection;
    let private = quote!(#krate::__private);
    let usable = usable_events(events.listed());
    let definition = event_enum::definition(events, krate, &usable);
    let from_impls = event_enum::from_impls(events, krate, &usable);
    let event_set = event_set(events, krate);
    let (impl_generics, ty_generics, _) = original.generics.split_for_impl();
    let projection_where = where_clause(original, &quote!(#private::Send + 'static));
    let enum_ident = &events.ident;
    let dispatch = match context {
        None => apply(original, events, krate),
        Some(context) => quote! {
            #[automatically_derived]
            impl #impl_generics #krate::Dispatch<#context> for #ident #ty_generics #projection_where {
                fn dispatch(
                    &mut self,
                    _: &#context,
                    _: #krate::Envelope<#enum_ident>,
                ) -> #private::Result<(), #krate::BoxError> {
                    #private::unreachable!()
                }
            }
        },
    };
    let (name_value, version) = (&name.value, version.number);
    let aggregates = aggregates(projection);
    let name_check = name_check(krate, "check_projection_name", name);
    quote! {
        #definition

        #[doc(hidden)]
        #[allow(unused_qualifications)]
        const _: () = {
            #from_impls
            #event_set

            #[automatically_derived]
            impl #impl_generics #krate::Projection for #ident #ty_generics #projection_where {
                type Event = #enum_ident;
                const NAME: &'static str = #name_value;
                const VERSION: u32 = #version;
                #aggregates
            }

            #dispatch
            #name_check
        };
    }
}

/// A stub `impl EventSet` for the enum.
fn event_set(events: &EventEnum<'_>, krate: &Path) -> TokenStream {
    let ident = &events.ident;
    let private = quote!(#krate::__private);
    quote! {
        #[automatically_derived]
        impl #krate::EventSet for #ident {
            const EVENTS: &'static [#krate::EventKey] = &[];
            const DECODERS: &'static [#krate::Decoder<Self>] = &[];

            fn index(&self) -> usize {
                #private::unreachable!()
            }

            fn encode(&self) -> #private::Encoded {
                #private::unreachable!()
            }
        }
    }
}

/// A stub `impl Apply<Enum>` for the type (`Apply` has no supertraits, so
/// the input's own where clause is enough).
fn apply(original: &DeriveInput, events: &EventEnum<'_>, krate: &Path) -> TokenStream {
    let (ident, enum_ident) = (&original.ident, &events.ident);
    let (impl_generics, ty_generics, where_clause) = original.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Apply<#enum_ident> for #ident #ty_generics #where_clause {
            fn apply(&mut self, _: &#enum_ident) {
                #krate::__private::unreachable!()
            }
        }
    }
}

/// The listed events that can be variants: without generic arguments, and
/// the first of any that share a variant name, so the stub enum adds no
/// "defined multiple times" or "conflicting implementations" errors.
fn usable_events(events: &[EventRef]) -> Vec<&EventRef> {
    let mut usable: Vec<&EventRef> = Vec::new();
    for event in events.iter().filter(|e| e.is_concrete()) {
        if !usable.iter().any(|u| u.variant == event.variant) {
            usable.push(event);
        }
    }
    usable
}

/// Generic inputs (refused) and unions (refused) may not meet the trait's
/// supertraits, and a stub that does not apply must not be one more error.
fn needs_workaround(input: &DeriveInput) -> bool {
    !input.generics.params.is_empty()
        || input.generics.where_clause.is_some()
        || matches!(input.data, Data::Union(_))
}

/// The input's own where clause and, when [`needs_workaround`], the trait's
/// supertraits as a bound, so that the stub impl silently does not apply to
/// a type that cannot have the real one. `for<'__es_w>` keeps the bound
/// from being "trivial", which stable Rust rejects when it does not hold
/// (rust-lang/rust#48214; thiserror's fallback does the same).
fn where_clause(input: &DeriveInput, supertraits: &TokenStream) -> TokenStream {
    let ident = &input.ident;
    let (_, ty_generics, own) = input.generics.split_for_impl();
    let mut predicates: Vec<TokenStream> = own
        .map(|w| w.predicates.iter().map(ToTokens::to_token_stream).collect())
        .unwrap_or_default();
    if needs_workaround(input) {
        predicates.push(quote!(for<'__es_w> #ident #ty_generics: #supertraits));
    }
    if predicates.is_empty() {
        TokenStream::new()
    } else {
        quote!(where #(#predicates),*)
    }
}
