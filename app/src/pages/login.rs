//! Sign-in for operators and retailers. Drivers never need an account.

use crate::api::SignIn;
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn LoginPage() -> impl IntoView {
    let sign_in = ServerAction::<SignIn>::new();
    let failure = move || sign_in.value().get().and_then(|r| r.err()).map(|e| super::error_text(&e));
    view! {
        <main class="mx-auto max-w-sm p-8 space-y-4">
            <h1 class="text-2xl font-bold">"Sign in to Forecourt"</h1>
            <ActionForm action=sign_in attr:class="space-y-3">
                <label class="block">"Email"
                    <input class="mt-1 w-full rounded border p-2" type="email" name="email" required autocomplete="username"/>
                </label>
                <label class="block">"Password"
                    <input class="mt-1 w-full rounded border p-2" type="password" name="password" required autocomplete="current-password"/>
                </label>
                <button class="rounded bg-slate-900 px-4 py-2 text-white" type="submit">"Sign in"</button>
            </ActionForm>
            {move || failure().map(|msg| view! { <p class="text-red-700" role="alert" data-testid="sign-in-error">{msg}</p> })}
            <a class="text-blue-700 underline" href="/forgot">"Forgot your password?"</a>
        </main>
    }
}
