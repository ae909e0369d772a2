// OneVault Site Tracking: the browser tracker. Plain ES2017, no dependencies, no build step.
//
// Paste once per page:
//   <script defer src="https://HOST/tracker.js" data-customer-id="one_spa" data-token="ovt_prod_…"></script>
// Options, as attributes of that tag:
//   data-api="https://…"     where events go (default: the origin this script was loaded from)
//   data-hash="true"         a change of the #hash alone is a new page view
//   data-downloads="true"    record file downloads (or the extensions to watch: "pdf zip epub")
//   data-session="storage"   keep a session id in sessionStorage (default: the server derives sessions)
//   data-respect-dnt="false" send even when Global Privacy Control or Do Not Track is on
//   data-allow-local         send from localhost, 127.x.x.x, [::1] and file: pages too
// Custom events: window.onevault.track("signup", {plan: "pro"}); the properties become event_data.
// To call it before this script has loaded, put this one line first; queued calls are replayed:
//   <script>window.onevault=window.onevault||{q:[],track:function(){this.q.push(arguments)}}</script>
// window.onevault.flush() sends what is queued now. No cookies, no localStorage; errors stay in here.
// GET /tracker.js serves this file without its whole-line // comments, blank lines and indentation
// (onevault/web/routes.py), so no string or template literal may span lines.
(() => {
  // Nothing we do may break the host page, so every entry point goes through this.
  const safe = f => (...x) => {
    try {
      return f(...x);
    } catch (e) {}
  };
  safe(() => {
    const w = window, d = document, n = navigator, loc = location, on = "addEventListener";
    const old = w.onevault;
    // Included twice: the first copy counts.
    if (old && old.flush) return;
    // currentScript is only set while this file runs (not in callbacks), so read everything now.
    const s = d.currentScript;
    const a = s.dataset;
    const api = (a.api || new URL(s.src).origin).replace(/\/$/, "") + "/api/v1/track/";
    // Off on a developer's machine, and when the visitor asks not to be tracked (GPC or DNT).
    const off = ((/^(localhost|127\.[\d.]+|\[::1\])$/.test(loc.hostname) || loc.protocol == "file:") && a.allowLocal == null)
      || ((n.globalPrivacyControl || n.doNotTrack == "1" || w.doNotTrack == "1") && a.respectDnt != "false");
    let dl = a.downloads, q = [], timer = 0, last, sid;
    dl = dl && dl != "false" && RegExp("\\.(" + (dl == "true" ? "pdf|zip|docx?|xlsx?|pptx?|csv|txt|mp[34]|dmg|exe" : dl.replace(/\W+/g, "|")) + ")$", "i");

    // randomUUID exists only in secure contexts (https, localhost); plain http gets a v4 UUID here.
    const uuid = () => crypto.randomUUID ? crypto.randomUUID()
      : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, c => (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));

    if (a.session == "storage") {
      // sessionStorage throws in some sandboxed frames and private modes: then the server decides.
      try {
        sid = sessionStorage.onevault_sid = sessionStorage.onevault_sid || uuid();
      } catch (e) {}
    }

    const send = events => {
      for (const e of events) e.sent_at = Date.now();
      const body = JSON.stringify(Object.assign(events[1] ? { events } : events[0], { customer_id: a.customerId, token: a.token }));
      const url = api + (events[1] ? "batch" : "async");
      // Both send a string body as text/plain;charset=UTF-8: a simple request, so no CORS preflight.
      // sendBeacon answers false when the browser will not queue it (size quota): fetch then.
      if (!(n.sendBeacon && n.sendBeacon(url, body))) {
        fetch(url, { method: "POST", body, keepalive: true, credentials: "omit" }).catch(() => {});
      }
    };

    const flush = safe(() => {
      clearTimeout(timer);
      timer = 0;
      // Small batches: beacons and keepalive requests share a 64 KB budget per page.
      while (q.length) send(q.splice(0, 20));
    });

    const track = safe((type, props) => {
      if (off) return;
      q.push({
        event_type: "" + type,
        event_id: uuid(),
        timestamp: Date.now(),
        page_url: loc.href,
        referrer: d.referrer || null,
        page_title: d.title,
        language: n.language,
        screen_width: screen.width,
        screen_height: screen.height,
        viewport_width: w.innerWidth,
        viewport_height: w.innerHeight,
        event_data: props,
        session_id: sid,
      });
      // Wait a moment so events of the same instant share one request; pagehide sends the rest.
      timer = timer || setTimeout(flush, 500);
    });

    w.onevault = { track, flush };
    if (off) return;

    const page = safe(() => {
      const url = a.hash == "true" ? loc.href : loc.href.split("#")[0];
      if (url != last) track("page_view");
      last = url;
    });
    // Single-page apps change the URL through the History API; popstate is Back/Forward.
    ["pushState", "replaceState"].forEach(m => {
      const orig = history[m];
      history[m] = (...x) => {
        const r = orig.apply(history, x);
        page();
        return r;
      };
    });
    w[on]("popstate", page);
    w[on]("hashchange", page);

    // Capture phase, so a handler that stops propagation cannot hide the click; auxclick is the
    // middle button (open in a new tab), which fires no click event.
    const click = safe(ev => {
      const el = ev.target.closest("a[href]");
      if (!el || ev.button > 1) return;
      // mailto:, tel: and javascript: links have no host; SVG links have no host property at all.
      if (dl && dl.test(el.pathname)) track("file_download", { url: el.href });
      else if (el.host && el.host != loc.host) track("outbound_click", { url: el.href });
    });
    d[on]("click", click, true);
    d[on]("auxclick", click, true);

    // pagehide, not unload: unload is unreliable on mobile and spoils the back/forward cache.
    w[on]("pagehide", flush);
    d[on]("visibilitychange", () => d.hidden && flush());
    page();
    // Calls made through the stub before this script ran come after the page view they belong to.
    if (old) for (const args of old.q || []) track(...args);
  })();
})();
