"""The browser UI at /ui in Debian's headless Chromium, driven by selenium, against a running Bodhi
with the real default model: first-run setup, chat with a streamed reply that is still there after a
reload, stop and regenerate, safe Markdown, a pull with live progress from the local test hub, a token
that works with the OpenAI SDK, and a user without rights kept out of admin pages.

Screenshots of each page go to .build/ui-screenshots (or BODHI_UI_SCREENSHOTS)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, REPO_ROOT, BodhiServer, default_model_file
from cloud_standins import StandIn
from fake_hub import FakeHub

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")

ADMIN, ADMIN_PASSWORD = "admin", "ui-admin-password"
SCREENSHOTS = Path(os.environ.get("BODHI_UI_SCREENSHOTS") or REPO_ROOT / ".build" / "ui-screenshots")
WAIT_S = 60


def hf_home_with_default_model(root: Path) -> Path:
    """A private HF cache holding the default model (its blob linked, not copied), so pulls in
    this test never touch the user's cache."""
    real = default_model_file()
    repo = real.parents[2]
    home = root / "hf"
    target = home / "hub" / repo.name
    for sub in ("refs", "snapshots"):
        shutil.copytree(repo / sub, target / sub, symlinks=True)
    (target / "blobs").mkdir(parents=True)
    for blob in (repo / "blobs").iterdir():
        (target / "blobs" / blob.name).symlink_to(blob.resolve())
    return home


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    fake = FakeHub(tmp_path_factory.mktemp("ui-hub"))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub):
    workdir = tmp_path_factory.mktemp("ui")
    bodhi = BodhiServer(workdir, provision=False, env={
        "HF_HOME": str(hf_home_with_default_model(workdir)), "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_ui_test",
        # Sign-ins from one address, many in a row: no limit gets in the way of the test.
        "BODHI_RATE_LIMITS": "off",
    })
    bodhi.start()
    yield bodhi
    result = bodhi.stop()
    assert not result.forced, bodhi.log_tail()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, browser):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shot(browser, f"failed-{request.node.name}")


def wait(driver, condition, timeout: float = WAIT_S):
    return WebDriverWait(driver, timeout).until(condition)


def visible(driver, css: str, timeout: float = WAIT_S):
    return wait(driver, EC.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout)


def text_in(driver, css: str, text: str, timeout: float = WAIT_S):
    return wait(driver, EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout)


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def fill(driver, label: str, value: str, within: str = "main") -> None:
    """Types into the field whose <label> reads `label` (found again if the page redrew it)."""
    for attempt in range(3):
        try:
            field = wait(driver, EC.presence_of_element_located((By.XPATH, f"//{within}//label[normalize-space()='{label}']")))
            box = driver.find_element(By.ID, field.get_attribute("for"))
            box.clear()
            box.send_keys(value)
            return
        except StaleElementReferenceException:
            if attempt == 2:
                raise


def click(driver, text: str, within: str = "main") -> None:
    wait(driver, EC.element_to_be_clickable((By.XPATH, f"//{within}//button[normalize-space()='{text}']"))).click()


def go(driver, server: BodhiServer, path: str) -> None:
    driver.get(server.base_url + path)
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")


def sign_in(driver, server: BodhiServer, username: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get_log("browser")  # what earlier pages logged
    go(driver, server, "/ui/login")
    visible(driver, "form[aria-label='Sign in']")
    # Nobody is signed in yet, and finding that out is no error in the console.
    assert [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
            and "favicon" not in entry["message"]] == []
    shot(driver, "00-login")
    fill(driver, "Username", username)
    fill(driver, "Password", password)
    click(driver, "Sign in")
    visible(driver, "#who a")


def problems(driver) -> list[str]:
    """Console errors and CSP violations the page logged, and controls without an accessible name."""
    logged = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
              and "favicon" not in entry["message"] and "401" not in entry["message"] and "403" not in entry["message"]]
    unlabelled = driver.execute_script("""
        return [...document.querySelectorAll('input, select, textarea, button')].filter((el) => {
          if (el.type === 'hidden' || el.closest('[hidden]')) return false;
          const label = el.labels && el.labels.length ? el.labels[0].textContent.trim() : '';
          return !(label || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent.trim()));
        }).map((el) => el.outerHTML.slice(0, 120));""")
    return logged + [f"no accessible name: {html}" for html in unlabelled]


def test_first_run_sets_up_the_admin_in_the_browser(server: BodhiServer, browser):
    go(browser, server, "/ui")
    wait(browser, EC.url_contains("/ui/setup"))
    visible(browser, "form[aria-label='Create the administrator']")
    # The page serves a strict policy: no inline script, nothing from elsewhere.
    csp = httpx.get(f"{server.base_url}/ui").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # From the keyboard: the first thing to focus skips to the content, the form opens with the
    # cursor in its first field, and Tab walks through the fields to the button.
    first = browser.execute_script("return document.querySelector('a[href], button, input, select, textarea').textContent")
    assert first == "Skip to content"
    order = []
    for _ in range(4):
        order.append(browser.switch_to.active_element.get_attribute("name") or browser.switch_to.active_element.text)
        ActionChains(browser).send_keys(Keys.TAB).perform()
    assert order == ["username", "password", "password-again", "Create administrator"], order
    shot(browser, "01-setup")
    fill(browser, "Username", ADMIN)
    fill(browser, "Password", ADMIN_PASSWORD)
    fill(browser, "Password again", "not the same")
    click(browser, "Create administrator")
    text_in(browser, ".form-error", "differ")
    fill(browser, "Password again", ADMIN_PASSWORD)
    click(browser, "Create administrator")
    wait(browser, EC.url_contains("/ui/chat"))
    text_in(browser, "#who", ADMIN)
    nav = visible(browser, "#nav").text
    assert all(item in nav for item in ("Chat", "Models", "Tokens", "Users", "Settings", "Status")), nav
    assert not problems(browser), problems(browser)


def test_chat_streams_a_reply_that_is_still_there_after_a_reload(server: BodhiServer, browser):
    go(browser, server, "/ui/chat")
    Select(visible(browser, "#chat-model")).select_by_value(DEFAULT_MODEL)
    prompt = visible(browser, "#prompt")
    prompt.send_keys("Say hello in one short sentence.")
    prompt.send_keys(Keys.ENTER)
    # While the reply streams the button stops it; when done, the reply shows its speed.
    text_in(browser, ".message.assistant .stats", "tok/s", timeout=120)
    reply = browser.find_element(By.CSS_SELECTOR, ".message.assistant .message-body").text
    assert reply.strip(), "the reply is empty"
    assert "TTFT" in browser.find_element(By.CSS_SELECTOR, ".message.assistant .stats").text
    wait(browser, EC.url_matches(r"/ui/chat/chat_[0-9a-f]+$"))
    chat_url = browser.current_url
    text_in(browser, ".chat-list", "Say hello in one short sentence.")
    shot(browser, "02-chat")

    browser.refresh()
    text_in(browser, ".message.user", "Say hello in one short sentence.")
    text_in(browser, ".message.assistant .message-body", reply.strip()[:20])
    assert browser.current_url == chat_url
    assert "tok/s" in browser.find_element(By.CSS_SELECTOR, ".message.assistant .stats").text

    # The same conversation is on the server, for any browser this user signs in from.
    with httpx.Client(base_url=server.base_url) as http:
        http.post("/bodhi/v1/auth/login", json={"username": ADMIN, "password": ADMIN_PASSWORD}).raise_for_status()
        chats = http.get("/bodhi/v1/chats").json()["data"]
        assert chats[0]["id"] == chat_url.rsplit("/", 1)[1] and chats[0]["message_count"] == 2
    assert not problems(browser), problems(browser)


def test_a_reply_can_be_stopped_and_regenerated(server: BodhiServer, browser):
    # A new chat with greedy sampling: this prompt, with no history before it, then runs for
    # hundreds of tokens, long enough to be stopped.
    browser.find_element(By.LINK_TEXT, "+ New chat").click()
    wait(browser, lambda d: d.current_url.endswith("/ui/chat") and not d.find_elements(By.CSS_SELECTOR, ".message"))
    click(browser, "Settings")
    fill(browser, "Temperature", "0")
    click(browser, "Save settings")
    text_in(browser, "#toasts", "Settings will be kept with this chat")
    prompt = visible(browser, "#prompt")
    prompt.send_keys("Write a very long story about a dragon, with many chapters.")
    prompt.send_keys(Keys.ENTER)
    text_in(browser, "#send", "Stop")
    # Messages are redrawn as tokens arrive, so the check runs inside the page.
    wait(browser, lambda d: d.execute_script("""
        const reply = [...document.querySelectorAll('.message.assistant')].at(-1);
        return reply !== undefined && reply.querySelector('.message-body').textContent.trim().length > 0;"""))
    click(browser, "Stop")
    text_in(browser, ".message.assistant:last-of-type .stats", "stopped")
    text_in(browser, "#send", "Send")

    click(browser, "Regenerate")
    text_in(browser, "#send", "Stop")
    click(browser, "Stop")
    text_in(browser, "#send", "Send")
    messages = browser.find_elements(By.CSS_SELECTOR, ".message")
    assert len(messages) == 2, [m.text for m in messages]  # the regenerated reply replaced the stopped one
    assert "stopped" in messages[-1].find_element(By.CSS_SELECTOR, ".stats").text

    # Per-chat settings: a system prompt and a token budget, kept with the chat.
    click(browser, "Settings")
    fill(browser, "System prompt", "Answer in one short sentence.")
    fill(browser, "Max tokens", "32")
    click(browser, "Save settings")
    text_in(browser, "#toasts", "Settings saved for this chat")

    # Edit the first question and send it again: what came after it goes.
    browser.find_elements(By.CSS_SELECTOR, ".message.user")[0].find_element(By.XPATH, ".//button[.='Edit']").click()
    editor = visible(browser, "textarea[aria-label='Edit message']")
    editor.clear()
    editor.send_keys("Say goodbye.")
    click(browser, "Save and send")
    text_in(browser, "#send", "Stop")
    text_in(browser, "#send", "Send", timeout=120)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".message")) == 2)
    assert browser.find_element(By.CSS_SELECTOR, ".message.user .message-body").text == "Say goodbye."
    chat_id = browser.current_url.rsplit("/", 1)[1]
    with httpx.Client(base_url=server.base_url) as http:
        http.post("/bodhi/v1/auth/login", json={"username": ADMIN, "password": ADMIN_PASSWORD}).raise_for_status()
        chat = http.get(f"/bodhi/v1/chats/{chat_id}").json()
    assert chat["settings"] == {"temperature": 0, "max_tokens": 32} and chat["system_prompt"] == "Answer in one short sentence."
    assert [m["content"] for m in chat["messages"]][0] == "Say goodbye." and len(chat["messages"]) == 2
    assert chat["messages"][1]["stats"]["completion_tokens"] <= 32


def test_markdown_renders_code_lists_and_links_but_never_html(server: BodhiServer, browser):
    hostile = (
        "## Result\n\n- one\n- **two**\n\n1. first\n2. second\n\n"
        "```python\nprint('<b>hi</b>')\n```\n\n"
        "<img src=x onerror=\"document.title='pwned'\"> <script>document.title='pwned'</script>\n\n"
        "[safe](https://example.org/docs) [bad](javascript:document.title='pwned')"
    )
    with httpx.Client(base_url=server.base_url) as http:
        login = http.post("/bodhi/v1/auth/login", json={"username": ADMIN, "password": ADMIN_PASSWORD}).json()
        created = http.post("/bodhi/v1/chats", headers={"X-CSRF-Token": login["csrf_token"]}, json={
            "title": "Markdown", "messages": [{"role": "user", "content": "<i>show</i> me"},
                                              {"role": "assistant", "content": hostile, "model": DEFAULT_MODEL}]}).json()
    go(browser, server, f"/ui/chat/{created['id']}")
    body = visible(browser, ".message.assistant .message-body")
    assert body.find_element(By.CSS_SELECTOR, "h4").text == "Result"
    assert [li.text for li in body.find_elements(By.CSS_SELECTOR, "ul > li")] == ["one", "two"]
    assert body.find_element(By.CSS_SELECTOR, "ul strong").text == "two"
    assert len(body.find_elements(By.CSS_SELECTOR, "ol > li")) == 2
    assert body.find_element(By.CSS_SELECTOR, "pre code").text == "print('<b>hi</b>')"
    assert body.find_element(By.XPATH, ".//button[.='Copy']")
    links = body.find_elements(By.CSS_SELECTOR, "a")
    assert [a.get_attribute("href") for a in links] == ["https://example.org/docs"]
    assert links[0].get_attribute("rel") == "noopener noreferrer nofollow"
    assert not body.find_elements(By.CSS_SELECTOR, "img, script, b")
    assert "<img src=x" in body.text and "javascript:" in body.text
    assert browser.find_element(By.CSS_SELECTOR, ".message.user .message-body").text == "<i>show</i> me"
    assert "pwned" not in browser.title

    # Search finds it by its content; the list follows the search.
    search = browser.find_element(By.CSS_SELECTOR, "input[type=search]")
    search.send_keys("one short sentence")
    wait(browser, lambda d: d.execute_script("""
        const text = document.querySelector('.chat-list').textContent;
        return text.includes('Say hello in one short sentence.') && !text.includes('Markdown');"""))
    search.clear()
    search.send_keys("zebra")
    text_in(browser, ".chat-list", "No chat matches")
    search.clear()
    search.send_keys("onerror")
    text_in(browser, ".chat-list", "Markdown")
    shot(browser, "03-markdown")


def test_a_pull_shows_live_progress_and_the_model_appears(server: BodhiServer, browser, hub: FakeHub):
    size = 6 * 1024 * 1024
    hub.add_repo("test-org/ui-GGUF", {"ui-model.Q4_0.gguf": b"GGUF" + os.urandom(size - 4)})
    hub.knobs.bytes_per_second = 1024 * 1024
    try:
        go(browser, server, "/ui/models")
        text_in(browser, "main table", DEFAULT_MODEL)
        assert "Q4_1" in browser.find_element(By.CSS_SELECTOR, "main table").text
        fill(browser, "Hugging Face model", "test-org/ui-GGUF:Q4_0")
        click(browser, "Pull")
        # Each event redraws the pull, so the check runs inside the page.
        wait(browser, lambda d: d.execute_script("""
            const bar = document.querySelector('.pull progress'), state = document.querySelector('.pull-state');
            return bar && state && bar.value > 0 && bar.value < arguments[0] && state.textContent.startsWith('downloading');""", size))
        shot(browser, "04-models-pulling")
        text_in(browser, ".pull-state", "completed", timeout=90)
        text_in(browser, "main table", "test-org/ui-GGUF:Q4_0")

        # A pull can be cancelled from the page (and retried later; the part downloaded stays).
        hub.add_repo("test-org/slow-GGUF", {"slow.Q8_0.gguf": b"GGUF" + os.urandom(size - 4)})
        hub.knobs.bytes_per_second = 256 * 1024
        fill(browser, "Hugging Face model", "test-org/slow-GGUF:Q8_0")
        click(browser, "Pull")
        text_in(browser, ".pull:first-child .pull-state", "downloading")
        wait(browser, EC.element_to_be_clickable((By.XPATH, "//div[contains(@class,'pull')][1]//button[.='Cancel']"))).click()
        text_in(browser, ".pull:first-child .pull-state", "cancelled")
        assert browser.find_element(By.XPATH, "//div[contains(@class,'pull')][1]//button[.='Retry']")
    finally:
        hub.knobs.bytes_per_second = None

    # An alias made here serves like a model.
    click(browser, "+ New alias")
    fill(browser, "Name", "smol-ui")
    Select(browser.find_element(By.XPATH, "//label[.='Model']/following-sibling::select")).select_by_value(DEFAULT_MODEL)
    fill(browser, "Temperature", "0.1")
    click(browser, "Create")
    text_in(browser, "main", "smol-ui")
    shot(browser, "05-models")
    assert not problems(browser), problems(browser)


def test_a_token_made_in_the_browser_works_with_the_openai_sdk(server: BodhiServer, browser):
    go(browser, server, "/ui/tokens")
    fill(browser, "Name", "sdk-from-ui")
    Select(browser.find_element(By.XPATH, "//label[.='Scope']/following-sibling::select")).select_by_value("user")
    click(browser, "Create token")
    token = visible(browser, ".token-value").get_attribute("value")
    assert token.startswith("bodhi_")
    text_in(browser, "main table", "sdk-from-ui")
    shot(browser, "06-tokens")
    with openai.OpenAI(base_url=server.api_url, api_key=token, max_retries=0, timeout=120) as client:
        assert DEFAULT_MODEL in [model.id for model in client.models.list()]
        reply = client.chat.completions.create(model="smol-ui", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        assert reply.choices[0].message.content is not None
    # Revoked in the browser, it stops working at once.
    browser.find_element(By.XPATH, "//tr[td[.='sdk-from-ui']]//button[.='Revoke']").click()
    click(browser, "Revoke", within="dialog")
    text_in(browser, "main table", "revoked")
    with openai.OpenAI(base_url=server.api_url, api_key=token, max_retries=0) as client, pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_admin_pages_render(server: BodhiServer, browser):
    for path, name, marker in [("/ui/settings", "07-settings", "BODHI_KEEP_ALIVE"), ("/ui/status", "08-status", "Overall"),
                               ("/ui/users", "09-users", ADMIN), ("/ui/account", "10-account", "Change password")]:
        go(browser, server, path)
        text_in(browser, "main", marker)
        shot(browser, name)
        assert not problems(browser), (path, problems(browser))
    # The status page shows Bodhi ready, with the engine the chat loaded.
    go(browser, server, "/ui/status")
    text_in(browser, "main p .tag.ok", "ready")
    text_in(browser, "main table", DEFAULT_MODEL)
    # What the engines are expected to take, against the memory budget.
    text_in(browser, "main", "memory budget")
    assert "Estimate" in browser.find_element(By.CSS_SELECTOR, "main table").text
    # A live setting change from the settings page.
    go(browser, server, "/ui/settings")
    box = visible(browser, "input[aria-label='BODHI_MAX_LOADED_MODELS']")
    box.clear()
    box.send_keys("lots", Keys.ENTER)
    text_in(browser, "tr:has(input[aria-label='BODHI_MAX_LOADED_MODELS']) .form-error", "BODHI_MAX_LOADED_MODELS")
    box = browser.find_element(By.CSS_SELECTOR, "input[aria-label='BODHI_MAX_LOADED_MODELS']")
    box.clear()
    box.send_keys("4", Keys.ENTER)
    text_in(browser, "#toasts", "BODHI_MAX_LOADED_MODELS saved")
    # Dark theme and a phone-sized window.
    browser.find_element(By.ID, "theme-toggle").click()
    browser.set_window_size(390, 844)
    go(browser, server, "/ui/chat")
    visible(browser, "#prompt")
    # The list of chats folds away on a phone, behind a button.
    assert not browser.find_element(By.ID, "chat-sidebar").is_displayed()
    click(browser, "Chats")
    text_in(browser, ".chat-list", "Markdown")
    shot(browser, "11-chat-phone-list")
    click(browser, "Chats")
    assert browser.find_element(By.ID, "menu-toggle").is_displayed()
    assert not browser.find_element(By.ID, "nav").is_displayed()
    browser.find_element(By.ID, "menu-toggle").click()
    assert browser.find_element(By.ID, "nav").is_displayed()
    overflow = browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page scrolls sideways on a phone by {overflow}px"
    shot(browser, "11-chat-phone-dark")
    browser.set_window_size(1280, 900)

    # Deleting a chat asks first, then leaves for a new chat, and the chat is gone from the list.
    go(browser, server, "/ui/chat")
    wait(browser, EC.element_to_be_clickable((By.XPATH, "//ul[contains(@class,'chat-list')]//a[.//span[.='Markdown']]"))).click()
    text_in(browser, ".chat-title", "Markdown")
    click(browser, "Delete")
    click(browser, "Delete", within="dialog")
    wait(browser, EC.url_matches(r"/ui/chat$"))
    text_in(browser, ".chat-title", "New chat")
    wait(browser, lambda d: "Markdown" not in d.find_element(By.CSS_SELECTOR, ".chat-list").text)


def test_an_admin_adds_a_backend_in_the_browser_and_its_key_never_comes_back(server: BodhiServer, browser):
    with StandIn("openai", "sk-from-the-ui", ["gpt-ui"]) as cloud:
        browser.get_log("browser")  # what earlier pages logged
        go(browser, server, "/ui/backends")
        fill(browser, "Name", "cloud")
        fill(browser, "URL", cloud.url + "/v1")
        fill(browser, "API key", "sk-from-the-ui")
        click(browser, "Add backend")
        text_in(browser, "#toasts", "Backend cloud added: 1 models as cloud/")
        text_in(browser, "main table", "cloud")
        assert cloud.requests[-1]["headers"]["Authorization"] == "Bearer sk-from-the-ui"
        assert "sk-from-the-ui" not in browser.page_source
        click(browser, "Test")
        text_in(browser, "#toasts", "cloud answers: 1 models")
        shot(browser, "12-backends")
        assert not problems(browser), problems(browser)
        # Its model is one of Bodhi's now, for this session too.
        listed = browser.execute_script("return fetch('/v1/models').then((r) => r.json())")
        assert "cloud/gpt-ui" in [model["id"] for model in listed["data"]]
        browser.find_element(By.XPATH, "//tr[th[.='cloud']]//button[.='Remove']").click()
        click(browser, "Remove", within="dialog")
        text_in(browser, "main", "No backends yet")


def test_a_newcomer_asks_for_access_and_cannot_reach_admin_pages(server: BodhiServer, browser):
    browser.delete_all_cookies()
    go(browser, server, "/ui/register")
    fill(browser, "Username", "uma")
    fill(browser, "Password", "uma-password")
    click(browser, "Create account")
    text_in(browser, "main", "Waiting for access")
    click(browser, "Request access")
    text_in(browser, "main", "Your request was sent")
    shot(browser, "12-waiting")
    # Signing out ends the session: the pages ask for a sign-in again.
    click(browser, "Sign out", within="header")
    wait(browser, EC.url_contains("/ui/login"))
    go(browser, server, "/ui/chat")
    wait(browser, EC.url_contains("/ui/login"))

    sign_in(browser, server, ADMIN, ADMIN_PASSWORD)
    go(browser, server, "/ui/users")
    row = wait(browser, EC.visibility_of_element_located((By.XPATH, "//tr[td[.='uma']]//button[.='Approve']")))
    row.click()
    text_in(browser, "#toasts", "uma may now sign in as user")

    sign_in(browser, server, "uma", "uma-password")
    nav = visible(browser, "#nav").text
    assert "Chat" in nav and "Users" not in nav and "Settings" not in nav
    for path in ("/ui/users", "/ui/settings"):
        go(browser, server, path)
        text_in(browser, "main", "Not allowed")
        assert "BODHI_KEEP_ALIVE" not in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "13-not-allowed")
    # The API says the same to this session, whatever the page shows.
    status = browser.execute_script("return fetch('/bodhi/v1/settings').then((r) => r.status)")
    assert status == 403
    # And the admin's chats are not hers.
    go(browser, server, "/ui/chat")
    visible(browser, ".chat-list")
    text_in(browser, ".chat-list", "No chats yet")

    # She changes her password; the old one stops working, the new one works.
    go(browser, server, "/ui/account")
    fill(browser, "Current password", "uma-password")
    fill(browser, "New password", "uma-new-password")
    click(browser, "Change password")
    wait(browser, EC.url_contains("/ui/login"))
    fill(browser, "Username", "uma")
    fill(browser, "Password", "uma-password")
    click(browser, "Sign in")
    text_in(browser, ".form-error", "password")
    sign_in(browser, server, "uma", "uma-new-password")
    text_in(browser, "#who", "uma")
