// @ts-check
// Sky Classroom — the page's token, kept out of the address bar.

const TOKEN_KEY = "skyclass.token";

/**
 * The page's token: from the address (?token=T), then kept in this tab's sessionStorage and taken
 * out of the address bar, so that it is not in a screenshot, a bookmark or a shared link, while a
 * reload and the replay pages opened from here still have it.
 * @returns {string}
 */
export function pageToken() {
  const q = new URLSearchParams(location.search);
  const given = (q.get("token") || "").trim();
  if (given) {
    try {
      sessionStorage.setItem(TOKEN_KEY, given);
      q.delete("token");
      history.replaceState(history.state, "", `${location.pathname}${q.size ? `?${q}` : ""}${location.hash}`);
    } catch {
      return given; // no storage (a private window's quota): keep it in the address
    }
    return given;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}
