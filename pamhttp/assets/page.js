// Progressive enhancement of the approver page; everything works without it.
// Times are written in UTC by the server: show them in the viewer's time zone.
// The request form's start is then taken in that zone too (the tz field).
(function () {
  "use strict";
  var fmt;
  try {
    fmt = new Intl.DateTimeFormat(undefined, {
      day: "numeric", month: "short", year: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
  } catch (e) {
    return;
  }
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d.getTime())) {
      el.title = el.textContent;
      el.textContent = fmt.format(d);
    }
  });
  var offset = -new Date().getTimezoneOffset();
  document.querySelectorAll('input[name="tz"]').forEach(function (el) {
    el.value = String(offset);
  });
  document.querySelectorAll(".tz-note").forEach(function (el) {
    el.textContent = "In your time zone.";
  });
})();
