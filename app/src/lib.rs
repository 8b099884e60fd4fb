//! Forecourt's user interface: the driver's page, the retailer dashboard and the operator console,
//! rendered on the server and hydrated in the browser.

pub mod api;
pub mod domain;
mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document around every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body class="min-h-screen bg-slate-50 text-slate-900 antialiased">
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Tests and people can tell a hydrated page from server-rendered HTML.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/forecourt.css"/>
        <Title text="Forecourt"/>
        <Router>
            // Async SSR: the whole page, and its status code, is known before the first byte is sent.
            <Routes fallback=|| view! { <pages::NotFound/> }>
                <Route path=path!("/") view=pages::Home/>
                <Route path=path!("/c/:charger/:connector") view=pages::driver::DriverPage ssr=SsrMode::Async/>
                <Route path=path!("/login") view=pages::login::LoginPage/>
                <Route path=path!("/forgot") view=pages::account::ForgotPasswordPage/>
                <Route path=path!("/set-password/:token") view=pages::account::SetPasswordPage ssr=SsrMode::Async/>
                <Route path=path!("/account") view=pages::account::AccountPage ssr=SsrMode::Async/>
                <Route path=path!("/account/team") view=pages::account::TeamPage ssr=SsrMode::Async/>
                <Route path=path!("/console") view=pages::console::ConsolePage ssr=SsrMode::Async/>
                <Route path=path!("/console/sites/:site") view=pages::console::SiteLoadPage ssr=SsrMode::Async/>
                <Route path=path!("/dashboard") view=pages::dashboard::DashboardPage ssr=SsrMode::Async/>
            </Routes>
        </Router>
    }
}
