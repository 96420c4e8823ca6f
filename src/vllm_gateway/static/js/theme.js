// Applies the remembered (or the system's) colour scheme before the page paints, so
// a dark-mode user never sees a white flash. Loaded as a blocking script in <head>.
(function () {
  var stored = null;
  try {
    stored = window.localStorage.getItem("vgw.theme");
  } catch (error) {
    stored = null;
  }
  var dark = stored
    ? stored === "dark"
    : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.classList.toggle("dark", dark);
})();
