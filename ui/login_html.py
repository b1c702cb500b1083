"""The login form as plain HTML: a form post to ``/session/login`` (``ui.web``), never JavaScript.

The same form is the whole page that ``ui.web.SessionGate`` answers a logged-out visit with, and
what ``ui.session.login_form`` shows inside the app when a login ends while a page is open. The
password goes to the server in the form post; the session token comes back only as an HttpOnly
cookie, so no script in the page ever holds it. Every string put into the page is escaped.

The second step of a login with two-step login (``db.mfa``) uses the same look: the code form
(:func:`mfa_form_html`), the enrolment page with its QR code (:func:`enrol_form_html`) and the
recovery codes shown once (:func:`recovery_codes_html`), each a form post to ``/session/mfa``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import urlsplit

LOGIN_PATH = "/session/login"
LOGOUT_PATH = "/session/logout"
SSO_PATH = "/session/sso"
MFA_PATH = "/session/mfa"

_CSS = """
.am-login{max-width:24rem;font-family:"Source Sans Pro",sans-serif;color:#31333f}
.am-login label{display:block;margin:.8rem 0 .2rem;font-size:.9rem}
.am-login input[type=text],.am-login input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;
 border:1px solid #d0d3da;border-radius:.5rem;font-size:1rem;background:#f0f2f6}
.am-login button,.am-logout button,.am-login a.am-sso{margin-top:1rem;padding:.45rem .9rem;border-radius:.5rem;
 border:1px solid #d0d3da;background:#fff;font-size:1rem;cursor:pointer;color:#31333f;text-decoration:none;
 display:inline-block}
.am-login a.am-sso{background:#ff4b4b;color:#fff;border-color:#ff4b4b}
.am-note{padding:.7rem 1rem;border-radius:.5rem;background:#e8f0fe;margin:.6rem 0}
.am-error{padding:.7rem 1rem;border-radius:.5rem;background:#fde8e8;color:#7d1a1a;margin:.6rem 0}
.am-warn{padding:.7rem 1rem;border-radius:.5rem;background:#fff4d6;margin:.6rem 0}
.am-qr svg{display:block;margin:.6rem 0}.am-codes{font-family:monospace;font-size:1.05rem;columns:2}
.am-demo{border-collapse:collapse;margin-top:.5rem}.am-demo td,.am-demo th{border:1px solid #e6e9ef;padding:.3rem .6rem;
 text-align:left}
"""


def safe_next(target: str | None) -> str:
    """A path on this server to return to after logging in (``/`` for anything else).

    Only a local path with its query survives (``/patient?patient=P00042``): no scheme, no host,
    no ``//`` or backslash that a browser would read as another host (an open redirect).
    """
    target = (target or "").strip()
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(c < " " for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def login_form_html(*, next_path: str = "/", notice: str | None = None, error: str | None = None,
                    warning: str | None = None, sso: tuple[str, str] | None = None,
                    demo: tuple[str, Sequence[Sequence[str]]] | None = None) -> str:
    """The form ("Username", "Password", "Log in"), with an optional notice, error, warning,
    single sign-on link (``(label, url)``) and demo account table (``(password, rows)``)."""
    esc = html.escape
    parts = _boxes(notice=notice, error=error, warning=warning)
    if sso is not None:
        label, url = sso
        parts.append(f'<a class="am-sso" role="button" href="{esc(url)}">{esc(label)}</a>'
                     "<p>Or log in with your Alliance Monitor username and password:</p>")
    parts.append(
        f'<form method="post" action="{LOGIN_PATH}" autocomplete="on">'
        f'<input type="hidden" name="next" value="{esc(safe_next(next_path))}">'
        '<label for="am-username">Username</label>'
        '<input type="text" id="am-username" name="username" autocomplete="username" required maxlength="64">'
        '<label for="am-password">Password</label>'
        '<input type="password" id="am-password" name="password" autocomplete="current-password" required '
        'maxlength="256">'
        '<button type="submit">Log in</button></form>')
    if demo is not None:
        password, rows = demo
        parts.append(f"<hr><p><b>Demo clinic.</b> All data are synthetic. Every demo account's password is "
                     f"<code>{esc(password)}</code>.</p>")
        parts.append('<table class="am-demo"><tr><th>Username</th><th>Role</th><th>Team</th><th>Name</th></tr>')
        parts += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</div>")
    return "".join(parts)


def _boxes(*, notice: str | None = None, error: str | None = None, warning: str | None = None) -> list[str]:
    esc = html.escape
    parts = [f"<style>{_CSS}</style>", '<div class="am-login">']
    if notice:
        parts.append(f'<div class="am-note" role="status">{esc(notice)}</div>')
    if error:
        parts.append(f'<div class="am-error" role="alert">{esc(error)}</div>')
    if warning:
        parts.append(f'<div class="am-warn" role="alert">{esc(warning)}</div>')
    return parts


def _code_field(button: str) -> str:
    return (f'<form method="post" action="{MFA_PATH}" autocomplete="off">'
            '<label for="am-code">Code</label>'
            '<input type="text" id="am-code" name="code" autocomplete="one-time-code" inputmode="text" required '
            'maxlength="32" autofocus>'
            f'<button type="submit">{html.escape(button)}</button></form>')


def mfa_form_html(*, name: str, error: str | None = None, warning: str | None = None) -> str:
    """The second step of a login ("Code", "Continue"): a form post to ``/session/mfa``."""
    parts = _boxes(error=error, warning=warning)
    parts.append(f"<h2>Two-step login</h2><p>Password accepted for <b>{html.escape(name)}</b>. Type the 6-digit "
                 "code your authenticator app shows for Alliance Monitor, or one of your recovery codes.</p>")
    parts.append(_code_field("Continue"))
    parts.append('<p><a href="/">Start again</a> (the code must be typed within 5 minutes).</p></div>')
    return "".join(parts)


def enrol_form_html(*, name: str, secret: str, qr_svg: str, error: str | None = None,
                    warning: str | None = None) -> str:
    """The enrolment step of a login: the QR code (an inline SVG made by ``db.mfa.qr_svg``), the
    key for typing in by hand and the first code ("Code", "Turn on two-step login")."""
    from db.mfa import key_for_typing

    esc = html.escape
    grouped = key_for_typing(secret)
    parts = _boxes(error=error, warning=warning)
    parts.append(f"<h2>Set up two-step login</h2><p>Password accepted for <b>{esc(name)}</b>. Your clinic requires "
                 "two-step login for your role. Scan this QR code with an authenticator app on your phone "
                 "(e.g. FreeOTP, Aegis, Google or Microsoft Authenticator), then type the 6-digit code it shows.</p>")
    parts.append(f'<div class="am-qr">{qr_svg}</div>')  # made by segno from our own URI: no user text in it
    parts.append(f'<p>Cannot scan? Type this key into the app (time-based, 6 digits, 30 seconds): '
                 f'<code id="am-secret">{esc(grouped)}</code></p>')
    parts.append(_code_field("Turn on two-step login"))
    parts.append("</div>")
    return "".join(parts)


def recovery_codes_html(codes: Sequence[str], *, next_path: str = "/", heading: str = "Two-step login is on") -> str:
    """The ten recovery codes, shown this once, and the way on to the app."""
    esc = html.escape
    parts = _boxes(warning="Save these recovery codes now (print them or keep them in a password manager): they "
                           "are shown only this once. Each works once, when your phone is not at hand.")
    parts.append(f"<h2>{esc(heading)}</h2>")
    parts.append('<ul class="am-codes" id="am-recovery-codes">' + "".join(f"<li>{esc(c)}</li>" for c in codes)
                 + "</ul>")
    parts.append(f'<p><a class="am-sso" role="button" href="{esc(safe_next(next_path))}">Continue to Alliance '
                 "Monitor</a></p></div>")
    return "".join(parts)


def logout_form_html() -> str:
    """The sidebar's "Log out" button: a form post to ``/session/logout`` (which ends the session
    on the server and clears the cookie)."""
    return (f"<style>{_CSS}</style>"
            f'<form class="am-logout" method="post" action="{LOGOUT_PATH}"><button type="submit">Log out</button>'
            "</form>")


def login_page(body: str, *, title: str = "Alliance Monitor") -> str:
    """A whole HTML page around the login form (what a logged-out visit gets)."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title></head>"
            "<body style=\"margin:3rem auto;max-width:46rem;padding:0 1rem;font-family:sans-serif\">"
            f"<h1>{html.escape(title)}</h1>"
            "<p>Weekly alliance and symptom monitoring: each patient against their own average.</p>"
            f"{body}</body></html>")
