// Every element with data-expires-at counts down to it (m:ss, or h:mm:ss an hour or
// more ahead), on every page.
(function () {
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires-at]").forEach(function (el) {
      var left = Math.max(0, Math.round((new Date(el.dataset.expiresAt).getTime() - now) / 1000));
      var minutes = Math.floor(left / 60);
      var text = minutes >= 60
        ? Math.floor(minutes / 60) + ":" + String(minutes % 60).padStart(2, "0")
        : String(minutes);
      text += ":" + String(left % 60).padStart(2, "0");
      if (el.textContent !== text) el.textContent = text;
      if (left === 0 && el.dataset.onExpire) el.textContent = el.dataset.onExpire;
    });
  }
  tick();
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
})();
