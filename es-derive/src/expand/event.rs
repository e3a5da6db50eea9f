//! `#[derive(Event)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use super::{around_path, name_check, register};
use crate::ast::EventInput;
use crate::ctxt::Ctxt;
use crate::fallback::{self, Invalid};
use crate::validate;

/// The expansion, or the errors and the stub emitted beside them.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    try_expand(input).unwrap_or_else(Invalid::into_tokens)
}

pub(crate) fn try_expand(input: &DeriveInput) -> Result<TokenStream, Invalid> {
    let cx = Ctxt::new();
    let event = EventInput::from_syn(&cx, input);
    validate::event(&cx, &event);
    match cx.check() {
        Ok(()) => Ok(expand(&event)),
        Err(errors) => Err(Invalid {
            errors,
            stub: fallback::event(&event),
        }),
    }
}

fn expand(event: &EventInput<'_>) -> TokenStream {
    let EventInput {
        ident,
        name,
        version,
        krate,
        ..
    } = event;
    let (name_value, version) = (&name.value, version.number);
    let private = quote!(#krate::__private);
    let (decode, versions, check) = match &event.upcast_from {
        None => (
            quote!(#private::decode_exact::<Self>(version, payload)),
            quote!(),
            quote!(),
        ),
        Some(prev) => {
            // Spanned over the user's `upcast_from = X`, so a missing
            // `From<X>` or a mismatched name or version is reported there.
            let check = around_path(quote!(#private::check_upcast::<#ident,), prev, quote!(>()));
            let check = quote!(const _: () = #check;);
            let versions = quote! {
                fn decodable_versions() -> #private::Vec<u32> {
                    #private::upcast_versions::<Self, #prev>()
                }
            };
            let decode = around_path(quote!(#private::decode_upcast::<#ident,), prev, quote!(>));
            (quote!(#decode(version, payload)), versions, check)
        }
    };
    let personal = (!event.personal.is_empty()).then(|| {
        let pairs = event.personal.iter().map(|p| {
            let field = &p.field_key;
            let subject = event.field_key(&p.subject).unwrap_or_default();
            quote!((#field, #subject))
        });
        quote!(const PERSONAL_SUBJECTS: &'static [(&'static str, &'static str)] = &[#(#pairs),*];)
    });
    let registration = register::event(krate, ident);
    let name_check = name_check(krate, "check_event_name", name);
    quote! {
        #[doc(hidden)]
        #[allow(unused_qualifications)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                const NAME: &'static str = #name_value;
                const VERSION: u32 = #version;
                #personal

                fn decode(version: u32, payload: &str) -> #private::Result<Self, #krate::DecodeError> {
                    #decode
                }

                #versions
            }

            #check
            #name_check
            #registration
        };
    }
}
