//! A person's own account: a forgotten password, a link from a mail or an invitation, a change of
//! password. Every form says what went wrong in words, beside the field it is about.

use crate::api::{ChangePassword, RequestPasswordReset, SetPassword};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

const FIELD: &str = "mt-1 w-full rounded border p-3 text-base";
const BUTTON: &str = "w-full rounded bg-slate-900 px-4 py-3 text-white text-base";

/// The rule, said before anyone breaks it.
fn password_hint() -> impl IntoView {
    view! { <p class="text-sm text-slate-600" id="password-rule">"At least 10 characters. A few unrelated words make a good one."</p> }
}

#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    let ask = ServerAction::<RequestPasswordReset>::new();
    view! {
        <main class="mx-auto max-w-sm p-6 space-y-4">
            <h1 class="text-2xl font-bold">"Forgot your password?"</h1>
            <p>"Give the email you sign in with. If it has an account, a link to choose a new password is on its way; it works once, for an hour."</p>
            <ActionForm action=ask attr:class="space-y-3">
                <label class="block">"Email"
                    <input class=FIELD type="email" name="email" required autocomplete="username"/>
                </label>
                <button class=BUTTON type="submit">"Send me a link"</button>
            </ActionForm>
            {move || ask.value().get().map(|r| match r {
                Ok(()) => view! {
                    <p class="rounded border border-emerald-300 bg-emerald-50 p-3" role="status" data-testid="reset-asked">
                        "If that email has an account, the link is in its inbox now. Check the spam folder too."
                    </p>
                }.into_any(),
                Err(e) => view! { <p class="text-red-700" role="alert" data-testid="reset-error">{super::error_text(&e)}</p> }.into_any(),
            })}
            <a class="text-blue-700 underline" href="/login">"Back to sign in"</a>
        </main>
    }
}

#[component]
pub fn SetPasswordPage() -> impl IntoView {
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let live = Resource::new(token, |token| async move { crate::api::password_link_live(token).await });
    let set = ServerAction::<SetPassword>::new();
    view! {
        <main class="mx-auto max-w-sm p-6 space-y-4">
            <h1 class="text-2xl font-bold">"Choose your password"</h1>
            <Suspense fallback=|| view! { <p>"Checking your link…"</p> }>
                {move || Suspend::new(async move {
                    match live.await {
                        Ok(true) => view! {
                            <ActionForm action=set attr:class="space-y-3">
                                <input type="hidden" name="token" value=token()/>
                                <label class="block">"New password"
                                    <input class=FIELD type="password" name="password" required minlength="10"
                                        autocomplete="new-password" aria-describedby="password-rule"/>
                                </label>
                                {password_hint()}
                                <label class="block">"The same again"
                                    <input class=FIELD type="password" name="confirm" required minlength="10" autocomplete="new-password"/>
                                </label>
                                <button class=BUTTON type="submit">"Save my password"</button>
                            </ActionForm>
                        }.into_any(),
                        Ok(false) => view! {
                            <p class="rounded border border-amber-300 bg-amber-50 p-3" data-testid="link-dead">
                                "This link has expired or was used already. "
                                <a class="text-blue-700 underline" href="/forgot">"Ask for a new one"</a>
                            </p>
                        }.into_any(),
                        Err(e) => view! { <p class="text-red-700" role="alert">{super::error_text(&e)}</p> }.into_any(),
                    }
                })}
            </Suspense>
            {move || set.value().get().map(|r| match r {
                Ok(()) => view! {
                    <p class="rounded border border-emerald-300 bg-emerald-50 p-3" role="status" data-testid="password-set">
                        "Your password is saved. " <a class="text-blue-700 underline" href="/login">"Sign in"</a>
                    </p>
                }.into_any(),
                Err(e) => view! { <p class="text-red-700" role="alert" data-testid="password-error">{super::error_text(&e)}</p> }.into_any(),
            })}
        </main>
    }
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let me = Resource::new(|| (), |_| crate::api::who_am_i());
    let change = ServerAction::<ChangePassword>::new();
    view! {
        <main class="mx-auto max-w-sm p-6 space-y-4">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(me)) => view! {
                            <a class="text-blue-700 underline" href=me.role.home()>"← Back"</a>
                        }.into_any(),
                        _ => view! { <super::SignInPrompt message="Sign in to change your password.".to_owned()/> }.into_any(),
                    }
                })}
            </Suspense>
            <h1 class="text-2xl font-bold">"Your account"</h1>
            <super::AccountBar/>
            <h2 class="pt-2 text-lg font-semibold">"Change your password"</h2>
            <p class="text-sm text-slate-600">"Your other sign-ins end; this one stays."</p>
            <ActionForm action=change attr:class="space-y-3">
                <label class="block">"Current password"
                    <input class=FIELD type="password" name="current" required autocomplete="current-password"/>
                </label>
                <label class="block">"New password"
                    <input class=FIELD type="password" name="password" required minlength="10"
                        autocomplete="new-password" aria-describedby="password-rule"/>
                </label>
                {password_hint()}
                <label class="block">"The same again"
                    <input class=FIELD type="password" name="confirm" required minlength="10" autocomplete="new-password"/>
                </label>
                <button class=BUTTON type="submit">"Change my password"</button>
            </ActionForm>
            {move || change.value().get().map(|r| match r {
                Ok(()) => view! {
                    <p class="rounded border border-emerald-300 bg-emerald-50 p-3" role="status" data-testid="password-changed">
                        "Your password is changed."
                    </p>
                }.into_any(),
                Err(e) => view! { <p class="text-red-700" role="alert" data-testid="password-error">{super::error_text(&e)}</p> }.into_any(),
            })}
        </main>
    }
}
