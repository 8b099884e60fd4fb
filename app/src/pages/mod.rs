//! One module per page.

pub mod account;
pub mod console;
pub mod dashboard;
pub mod driver;
pub mod login;

use crate::domain::Role;
use leptos::prelude::*;

#[component]
pub fn Home() -> impl IntoView {
    view! {
        <main class="mx-auto max-w-xl p-8 space-y-4">
            <h1 class="text-3xl font-bold">"Forecourt"</h1>
            <p>"Charging for retail sites that cannot get a bigger grid connection."</p>
            <ul class="list-disc pl-6">
                <li><a class="text-blue-700 underline" href="/console">"Operator console"</a></li>
                <li><a class="text-blue-700 underline" href="/dashboard">"Retailer dashboard"</a></li>
                <li>"Drivers: scan the QR code on a charger."</li>
            </ul>
        </main>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <main class="mx-auto max-w-xl p-8">
            <h1 class="text-2xl font-bold">"Page not found"</h1>
            <a class="text-blue-700 underline" href="/">"Home"</a>
        </main>
    }
}

/// A signal that ticks every `seconds` in the browser (never on the server): live pages ask again.
pub(crate) fn ticking(seconds: u64) -> RwSignal<u32> {
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        let every = std::time::Duration::from_secs(seconds);
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|t| *t += 1), every) {
            // Leaving the page stops it.
            on_cleanup(move || handle.clear());
        }
    });
    tick
}

/// A server function's failure, shown to a person in plain words.
pub fn error_text(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// Who is signed in, in what role, and the ways out: this browser only, or every device.
#[component]
pub fn AccountBar() -> impl IntoView {
    let me = Resource::new(|| (), |_| crate::api::who_am_i());
    let sign_out = ServerAction::<crate::api::SignOut>::new();
    let everywhere = ServerAction::<crate::api::SignOutEverywhere>::new();
    view! {
        <div class="flex flex-wrap items-center gap-3 text-sm" data-testid="account-bar">
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    me.await.ok().flatten().map(|me| {
                        let admin = matches!(me.role, Role::OperatorAdmin | Role::RetailerAdmin(_));
                        view! {
                            <span data-testid="signed-in-as">{me.email}" · "{me.role.label()}</span>
                            {admin.then(|| view! { <a class="underline" href="/account/team">"Team"</a> })}
                        }
                    })
                })}
            </Transition>
            <a class="underline" href="/account">"Account"</a>
            <leptos::form::ActionForm action=sign_out>
                <button class="underline" type="submit">"Sign out"</button>
            </leptos::form::ActionForm>
            <leptos::form::ActionForm action=everywhere>
                <button class="underline" type="submit" data-testid="sign-out-everywhere">"Sign out everywhere"</button>
            </leptos::form::ActionForm>
        </div>
    }
}

/// Shown where a page needs a signed-in person.
#[component]
pub fn SignInPrompt(message: String) -> impl IntoView {
    view! {
        <div class="rounded-lg border border-amber-300 bg-amber-50 p-4" data-testid="sign-in-prompt">
            <p>{message}</p>
            <a class="text-blue-700 underline" href="/login">"Sign in"</a>
        </div>
    }
}
