"""
Headless Chromium driven by selenium: the mirror page's browser tests and benchmark.

Uses the system's Chromium and chromedriver (Debian: ``chromium``, ``chromium-driver``);
nothing is downloaded. The browser's own background traffic (updates, metrics, sync) is
switched off so that the page's requests are the only ones.
"""

import os
import shutil
from typing import Any

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')
INSTALL = ('install the browser with `apt-get update && apt-get install -y chromium '
           'chromium-driver` (Debian) and selenium with `make setup`')
COMMAND_TIMEOUT = 600  # seconds for one browser command: a loaded 2-core CI can be slow
FLAGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
         '--hide-scrollbars', '--force-device-scale-factor=1', '--no-first-run',
         '--no-default-browser-check', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-default-apps',
         '--disable-extensions', '--disable-domain-reliability', '--metrics-recording-only',
         '--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication',
         '--autoplay-policy=no-user-gesture-required')


def find() -> tuple[str, str] | None:
    """Return (browser, chromedriver) paths, or None when either is missing."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which('chromedriver')
    if browser is None or driver is None:
        return None
    return browser, driver


def missing() -> str:
    """Say what is missing to run the browser ('' when everything is there)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f'selenium is not installed: {INSTALL}'
    if find() is None:
        return f'Chromium or chromedriver is not installed: {INSTALL}'
    return ''


def chrome(width: int, height: int) -> Any:
    """Start headless Chromium with a ``width`` x ``height`` viewport; console and network logs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault('SE_OFFLINE', 'true')  # selenium must not look for drivers online
    found = find()
    if found is None:
        raise RuntimeError(missing())
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in FLAGS + (f'--window-size={width},{height}',):
        options.add_argument(flag)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL', 'performance': 'ALL'})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    driver.command_executor.client_config.timeout = COMMAND_TIMEOUT
    resize(driver, width, height)
    return driver


def resize(driver: Any, width: int, height: int) -> None:
    """Give the page a viewport of exactly ``width`` x ``height`` CSS pixels."""
    driver.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', {
        'width': width, 'height': height, 'deviceScaleFactor': 1, 'mobile': False})
