"""Who is reviewing: the identity provider's user when one is configured, otherwise a name asked once per session.

With an ``[auth]`` section in ``.streamlit/secrets.toml`` (an OpenID Connect provider: Google, Microsoft
Entra, Okta, Auth0, Keycloak...), the sidebar offers ``st.login()`` and the reviewer is ``st.user``'s e-mail
(or name). Without one, the sidebar asks for a name, kept in the session. Every verdict and correction
records ``current_reviewer()``; saving is refused while it is empty.
"""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

REVIEWER_KEY = "_reviewer"  # the session's reviewer name (not a widget key: it survives page switches)
_WIDGET_KEY = "reviewer_name"


def auth_configured() -> bool:
    """True when ``.streamlit/secrets.toml`` has an ``[auth]`` section (st.login can work)."""
    try:
        return "auth" in st.secrets
    except (StreamlitSecretNotFoundError, FileNotFoundError):  # no secrets file at all
        return False


def current_reviewer() -> str:
    """The logged-in user's e-mail (or name) when an identity provider is configured, else the session's name."""
    if auth_configured():
        if not st.user.is_logged_in:
            return ""
        return str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "")
    return str(st.session_state.get(REVIEWER_KEY, "")).strip()


def _remember_name() -> None:
    st.session_state[REVIEWER_KEY] = str(st.session_state[_WIDGET_KEY]).strip()


def reviewer_sidebar(container) -> str:
    """The reviewer control in the sidebar (login button, or the name field); returns the current reviewer."""
    if auth_configured():
        if st.user.is_logged_in:
            container.caption(f"Reviewing as **{current_reviewer()}**")
            if container.button("Log out", key="reviewer_logout"):
                st.logout()
        elif container.button("Log in to review", key="reviewer_login", type="primary"):
            st.login()
        return current_reviewer()
    st.session_state[_WIDGET_KEY] = st.session_state.get(REVIEWER_KEY, "")
    container.text_input("Reviewer name", key=_WIDGET_KEY, on_change=_remember_name, placeholder="e.g. Dr A. Smith",
                         help="Recorded with every verdict and correction you save in this session. An "
                              "administrator can require a login instead ([auth] in .streamlit/secrets.toml).")
    return current_reviewer()
