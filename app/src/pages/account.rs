//! A person's own account: a forgotten password, a link from a mail or an invitation, a change of
//! password. Every form says what went wrong in words, beside the field it is about.

use crate::api::{ChangePassword, RequestPasswordReset, SetPassword};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

const FIELD: &str = "mt-1 w-full rounded border p-3 text-base";
const BUTTON: &str = "w-full rounded bg-slate-900 px-4 py-3 text-white text-base";

/// A new password and the same again, with the rule said before anyone breaks it.
#[component]
fn NewPassword() -> impl IntoView {
    view! {
        <label class="block">"New password"
            <input class=FIELD type="password" name="password" required minlength="10"
                autocomplete="new-password" aria-describedby="password-rule"/>
        </label>
        <p class="text-sm text-slate-600" id="password-rule">"At least 10 characters. A few unrelated words make a good one."</p>
        <label class="block">"The same again"
            <input class=FIELD type="password" name="confirm" required minlength="10" autocomplete="new-password"/>
        </label>
    }
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
                                <NewPassword/>
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
                <NewPassword/>
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

/// The people on an admin's team: who they are, who has not chosen a password yet, an invitation
/// form, and removal. An operator admin's team is the operators; a retailer admin's, their staff.
#[component]
pub fn TeamPage() -> impl IntoView {
    let invite = ServerAction::<crate::api::InviteToTeam>::new();
    let remove = ServerAction::<crate::api::RemoveFromTeam>::new();
    let me = Resource::new(|| (), |_| crate::api::who_am_i());
    let team =
        Resource::new(move || (invite.version().get(), remove.version().get()), |_| crate::api::my_team());
    view! {
        <main class="mx-auto max-w-2xl p-6 space-y-4">
            <h1 class="text-2xl font-bold">"Your team"</h1>
            <super::AccountBar/>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let me = me.await.ok().flatten();
                    match team.await {
                        Ok(members) => {
                            let my_email = me.as_ref().map(|m| m.email.clone()).unwrap_or_default();
                            let roles = match me.map(|m| m.role) {
                                Some(r) if r.is_operator() => [("operator_support", "Operator support"), ("operator_admin", "Operator admin")],
                                _ => [("retailer_viewer", "Retailer viewer (reads only)"), ("retailer_admin", "Retailer admin")],
                            };
                            view! {
                                <ul class="divide-y rounded border bg-white" data-testid="team">
                                    {members.into_iter().map(|m| {
                                        let mine = m.email == my_email;
                                        let id = m.id;
                                        view! {
                                            <li class="flex flex-wrap items-center justify-between gap-2 p-3">
                                                <span>
                                                    <span class="font-medium">{m.email.clone()}</span>
                                                    " · " {m.role.label()}
                                                    {(!m.has_password).then(|| view! { <span class="ml-2 rounded bg-amber-100 px-2 text-sm">"invited"</span> })}
                                                </span>
                                                {(!mine).then(|| view! {
                                                    <button type="button" class="rounded border px-3 py-2 text-sm"
                                                        data-testid=format!("remove-{}", m.email)
                                                        on:click=move |_| { remove.dispatch(crate::api::RemoveFromTeam { id }); }>
                                                        "Remove"
                                                    </button>
                                                })}
                                            </li>
                                        }
                                    }).collect_view()}
                                </ul>
                                <h2 class="pt-2 text-lg font-semibold">"Invite someone"</h2>
                                <ActionForm action=invite attr:class="space-y-3">
                                    <label class="block">"Their email"
                                        <input class=FIELD type="email" name="email" required/>
                                    </label>
                                    <label class="block">"Role"
                                        <select class=FIELD name="role">
                                            {roles.into_iter().map(|(kind, label)| view! { <option value=kind>{label}</option> }).collect_view()}
                                        </select>
                                    </label>
                                    <button class=BUTTON type="submit">"Invite"</button>
                                </ActionForm>
                            }.into_any()
                        }
                        Err(e) => view! { <super::SignInPrompt message=super::error_text(&e)/> }.into_any(),
                    }
                })}
            </Suspense>
            {move || invite.value().get().map(|r| match r {
                Ok(i) => view! {
                    <div class="rounded border border-emerald-300 bg-emerald-50 p-3 space-y-1" role="status" data-testid="invited">
                        <p>{if i.mailed { format!("{} is invited: the link is in their inbox.", i.email) } else { format!("{} is invited. Pass this link on to them (it works once, for seven days):", i.email) }}</p>
                        <p class="break-all font-mono text-sm" data-testid="invite-link">{i.link}</p>
                    </div>
                }.into_any(),
                Err(e) => view! { <p class="text-red-700" role="alert" data-testid="invite-error">{super::error_text(&e)}</p> }.into_any(),
            })}
            {move || remove.value().get().and_then(|r| r.err()).map(|e| view! {
                <p class="text-red-700" role="alert">{super::error_text(&e)}</p>
            })}
        </main>
    }
}
