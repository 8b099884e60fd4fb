import { test, expect } from "@playwright/test";
import { hydrated, signIn } from "./helpers";

test("the driver page is server-rendered, then hydrates and reacts without a reload", async ({ page }) => {
  const response = await page.goto("/c/FM-CAM-01/1");
  expect(response?.status()).toBe(200);
  // Server-rendered HTML already carries the brand and the price.
  const html = await response!.text();
  expect(html).toContain("FreshMart Camden");
  expect(html).toContain("£0.49");

  await hydrated(page);
  await page.evaluate(() => ((window as any).__sameDocument = true));
  await expect(page.getByTestId("price-details")).toHaveCount(0);
  await page.getByTestId("toggle-prices").click();
  await expect(page.getByTestId("price-details")).toContainText("10 kWh costs £4.90");
  await expect(page.getByTestId("toggle-prices")).toHaveText("Hide price details");
  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
});

test("two retailers wear the colours their theme files configure", async ({ page }) => {
  await page.goto("/c/FM-CAM-01/1");
  const fresh = await page.getByTestId("brand-header").evaluate((el) => getComputedStyle(el).backgroundColor);
  await page.goto("/c/UP-ZUI-01/1");
  const urban = await page.getByTestId("brand-header").evaluate((el) => getComputedStyle(el).backgroundColor);
  expect(fresh).toBe("rgb(11, 138, 62)"); // themes/freshmart/theme.toml primary #0b8a3e
  expect(urban).toBe("rgb(91, 33, 182)"); // themes/urbanpod/theme.toml primary #5b21b6
  await expect(page.getByTestId("price-per-kwh")).toContainText("€0.59");
  await expect(page.getByTestId("support")).toContainText("+31 20 555 0199");
});

test("an unknown charger gets a clear message, not a crash", async ({ page }) => {
  const response = await page.goto("/c/NO-SUCH-CHARGER/1");
  expect(response?.status()).toBe(404);
  await expect(page.getByTestId("driver-error")).toContainText("no such charger or connector");
});

test("the operator signs in and sees every charger on the network", async ({ page }) => {
  await page.goto("/console");
  await expect(page.getByTestId("sign-in-prompt")).toBeVisible();
  await signIn(page, "operator@forecourt.local", "demo-operator-pass");
  await expect(page).toHaveURL(/\/console$/);
  const table = page.getByTestId("charger-table");
  for (const id of ["FM-CAM-01", "FM-CAM-02", "UP-ZUI-01", "UP-ZUI-02"]) {
    await expect(table).toContainText(id);
  }
});

test("a wrong password is refused with a reason", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill("operator@forecourt.local");
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("sign-in-error")).toContainText("wrong email or password");
  await expect(page).toHaveURL(/\/login$/);
});

test("a retailer sees its own sites and never another retailer's", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill("manager@urbanpod.example");
  await page.getByLabel("Password").fill("demo-urbanpod-pass");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("retailer-name")).toHaveText("UrbanPod");
  await expect(page.getByTestId("site-list")).toContainText("UrbanPod Zuidas");
  await expect(page.getByTestId("site-list")).not.toContainText("FreshMart");
  // The operator console is not for retailers.
  await page.goto("/console");
  await expect(page.getByTestId("sign-in-prompt")).toContainText("you do not have access");
});
