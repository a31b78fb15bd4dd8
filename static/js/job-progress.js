// A background job's page, progressively enhanced (templates/admin/jobs/_progress.html): read
// the page again every 2 seconds and update the status words and the progress bar in place,
// instead of reloading the whole page (a meta refresh, which moves a screen reader back to the
// top and which WCAG 2.2.1 asks to avoid). When the job is no longer queued or running, the
// page loads again (or follows where the page now sends, such as an import's report).
// Without this script the page's <noscript> meta refresh keeps it up to date.
(function () {
  "use strict";
  var box = document.getElementById("job-progress");
  if (!box || box.getAttribute("data-following") !== "yes" || !window.fetch || !window.DOMParser) {
    return;
  }
  var every = 2000;

  function copy(selector, next) {
    var here = box.querySelector(selector);
    var there = next.querySelector(selector);
    if (!here || !there) { return; }
    if (here.tagName === "PROGRESS") {
      here.max = there.max;
      here.value = there.value;
      here.textContent = there.textContent;
    } else if (here.textContent !== there.textContent) {
      here.textContent = there.textContent;  // a role="status": read out politely
    }
  }

  function poll() {
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected) {
          window.location.assign(response.url);
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) { window.setTimeout(poll, every * 2); return; }
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("job-progress");
        if (!next || next.getAttribute("data-following") !== "yes") {
          window.location.reload();
          return;
        }
        copy("[role=status]", next);
        copy("progress", next);
        window.setTimeout(poll, every);
      })
      .catch(function () { window.setTimeout(poll, every * 2); });
  }

  window.setTimeout(poll, every);
})();
