"""Signing up and in through the console's own form; who you are, your plan and usage."""

from __future__ import annotations

import secrets
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot

pytestmark = pytest.mark.browser


def test_register_sign_in_and_see_plan_and_usage(page, stack):
    email, password = f"{uuid.uuid4().hex[:10]}@example.com", secrets.token_urlsafe(12)
    page.goto("/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "login")
    page.get_by_role("tab", name="Register").click()
    page.get_by_label("Name").fill("Ada Lovelace")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    # the browser's own check refuses a password under 8 characters before any request
    expect(page.get_by_test_id("me-email")).to_have_count(0)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_test_id("me-email")).to_have_text(email)
    expect(page.get_by_test_id("me-plan")).to_have_text("free")
    expect(page.get_by_text("GPU hours:")).to_be_visible()
    expect(page.get_by_test_id("who")).to_have_text(email)
    shot(page, "home")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password + "x")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_be_visible()  # the API's refusal, in its words
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_test_id("me-email")).to_have_text(email)
