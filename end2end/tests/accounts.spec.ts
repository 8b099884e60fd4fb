import { test, expect, Page } from "@playwright/test";
import { hydrated, signIn } from "./helpers";

const PHONE = { width: 390, height: 844 };
const LAPTOP = { width: 1280, height: 800 };

/** Screenshots of a page at phone and laptop sizes, to look at as a person would. */
async function shots(page: Page, name: string) {
  for (const [size, viewport] of [["phone", PHONE], ["laptop", LAPTOP]] as const) {
    await page.setViewportSize(viewport);
    await page.screenshot({ path: `test-results/${name}-${size}.png`, fullPage: true });
  }
}

test("each role lands where it works and says who is signed in", async ({ page }) => {
  await signIn(page, "support@forecourt.local", "demo-support-pass");
  await expect(page).toHaveURL(/\/console$/);
  await expect(page.getByTestId("signed-in-as")).toHaveText("support@forecourt.local · Operator support");
  await expect(page.getByTestId("charger-table")).toContainText("FM-CAM-01");

  await page.context().clearCookies();
  await signIn(page, "staff@freshmart.example", "demo-freshmart-staff");
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("signed-in-as")).toHaveText("staff@freshmart.example · Retailer viewer");
  await expect(page.getByTestId("site-list")).toContainText("FreshMart Camden");
  // A viewer is no operator.
  await page.goto("/console");
  await expect(page.getByTestId("sign-in-prompt")).toContainText("you do not have access");
});

test("an invited person chooses a password on a page that explains its errors, then signs in", async ({ page, request }) => {
  const invited = await request.post("/api/v1/users", {
    headers: { Authorization: "Bearer demo-operator-api-token" },
    data: { email: "new.manager@urbanpod.example", role: "retailer_admin", retailer_id: 2 },
  });
  expect(invited.status()).toBe(201);
  const { invite_url } = await invited.json();
  await page.goto(new URL(invite_url).pathname);
  await hydrated(page);
  await shots(page, "set-password");
  // The rule is said before anyone breaks it; a mismatch is explained by the server.
  await expect(page.getByText("At least 10 characters")).toBeVisible();
  await page.getByLabel("New password").fill("rain-on-the-car-park");
  await page.getByLabel("The same again").fill("rain-on-the-carpark");
  await page.getByRole("button", { name: "Save my password" }).click();
  await expect(page.getByTestId("password-error")).toContainText("the two passwords differ");
  await page.getByLabel("The same again").fill("rain-on-the-car-park");
  await page.getByRole("button", { name: "Save my password" }).click();
  await expect(page.getByTestId("password-set")).toContainText("Your password is saved");

  // The link is spent: opening it again says so, with the way forward.
  await page.goto(new URL(invite_url).pathname);
  await expect(page.getByTestId("link-dead")).toContainText("expired or was used");

  await signIn(page, "new.manager@urbanpod.example", "rain-on-the-car-park");
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("retailer-name")).toHaveText("UrbanPod");
});

test("a forgotten password is asked for without saying who has an account", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await expect(page).toHaveURL(/\/forgot$/);
  await hydrated(page);
  await page.getByLabel("Email").fill("nobody-at-all@example.com");
  await page.getByRole("button", { name: "Send me a link" }).click();
  await expect(page.getByTestId("reset-asked")).toContainText("If that email has an account");
  await shots(page, "forgot-password");
});

test("a person changes their password and signs out everywhere", async ({ page, browser }) => {
  await signIn(page, "manager@freshmart.example", "demo-freshmart-pass");
  await expect(page).toHaveURL(/\/dashboard$/);
  // A second device, signed in as the same person.
  const other = await browser.newPage();
  await signIn(other, "manager@freshmart.example", "demo-freshmart-pass");
  await expect(other).toHaveURL(/\/dashboard$/);

  await page.getByRole("link", { name: "Account" }).click();
  await expect(page).toHaveURL(/\/account$/);
  await hydrated(page);
  await shots(page, "account");
  await page.getByLabel("Current password").fill("not-my-password");
  await page.getByLabel("New password").fill("apples-and-pears-2026");
  await page.getByLabel("The same again").fill("apples-and-pears-2026");
  await page.getByRole("button", { name: "Change my password" }).click();
  await expect(page.getByTestId("password-error")).toContainText("your current password is not that one");
  await page.getByLabel("Current password").fill("demo-freshmart-pass");
  await page.getByRole("button", { name: "Change my password" }).click();
  await expect(page.getByTestId("password-changed")).toBeVisible();

  // The other device was signed out by the change; this one stays until it signs out everywhere.
  await other.goto("/dashboard");
  await expect(other.getByTestId("sign-in-prompt")).toBeVisible();
  await page.goto("/dashboard");
  await expect(page.getByTestId("site-list")).toContainText("FreshMart Camden");
  await page.getByTestId("sign-out-everywhere").click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/dashboard");
  await expect(page.getByTestId("sign-in-prompt")).toBeVisible();
  await other.close();
});

test("a retailer admin invites a member of staff from the team page and removes them again", async ({ page }) => {
  await signIn(page, "manager@urbanpod.example", "demo-urbanpod-pass");
  await expect(page).toHaveURL(/\/dashboard$/);
  await page.getByRole("link", { name: "Team" }).click();
  await expect(page).toHaveURL(/\/account\/team$/);
  await hydrated(page);
  const team = page.getByTestId("team");
  await expect(team).toContainText("manager@urbanpod.example");
  await expect(team).toContainText("staff@urbanpod.example");
  await expect(team).not.toContainText("freshmart");

  await page.getByLabel("Their email").fill("night.shift@urbanpod.example");
  await page.getByLabel("Role").selectOption("retailer_viewer");
  await page.getByRole("button", { name: "Invite" }).click();
  await expect(page.getByTestId("invited")).toContainText("Pass this link on");
  await expect(page.getByTestId("invite-link")).toContainText("/set-password/");
  await expect(team).toContainText("night.shift@urbanpod.example");
  await expect(team.locator("li", { hasText: "night.shift@urbanpod.example" })).toContainText("invited");
  await shots(page, "team");

  // The same email twice is refused with the reason.
  await page.getByLabel("Their email").fill("night.shift@urbanpod.example");
  await page.getByRole("button", { name: "Invite" }).click();
  await expect(page.getByTestId("invite-error")).toContainText("already exists");

  await page.getByTestId("remove-night.shift@urbanpod.example").click();
  await expect(team).not.toContainText("night.shift@urbanpod.example");
  // Nobody can remove themselves from here: there is no button on one's own line.
  await expect(page.getByTestId("remove-manager@urbanpod.example")).toHaveCount(0);
});

test("a viewer has no team to manage", async ({ page }) => {
  await signIn(page, "staff@urbanpod.example", "demo-urbanpod-staff");
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("signed-in-as")).toBeVisible();
  await expect(page.getByRole("link", { name: "Team" })).toHaveCount(0);
  await page.goto("/account/team");
  await expect(page.getByTestId("sign-in-prompt")).toContainText("you do not have access");
});
