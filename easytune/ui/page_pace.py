"""An idle page draws a few frames a second, not sixty.

Two of Gradio's own loops ask the browser for an animation frame at every frame with nothing to show: the
loading screen's status tracker keeps its timer running after the app has loaded (its element is gone, the
loop is not), and the wizard's step tabs measure themselves again at each frame once step ② has been shown.
Each frame costs the browser a round of style, layout and paint: 9 % of a core with the page idle on step ①,
12–21 % on the monitor (headless Chromium, 2 cores of an AMD EPYC), taken from a training run on the same
cores. This script, put first in the page's <head> with the language's (page_language.py), holds the frames
asked for while nobody has touched the page for ACTIVE_MS and hands them out together every IDLE_FRAME_MS.
Moving the mouse, typing or scrolling gives full-speed frames back at once, so charts, menus and transitions
stay smooth while the user works; updates the app pushes are drawn without frames and show as they arrive.
"""

ACTIVE_MS = 2000  # after the user's last input, frames come at the display's pace this long
IDLE_FRAME_MS = 250  # otherwise at most four rounds of frames a second

SCRIPT = """<script>(() => {
  const active = ACTIVE_MS, idle = IDLE_FRAME_MS;
  const frame = window.requestAnimationFrame.bind(window), cancel = window.cancelAnimationFrame.bind(window);
  let touched = performance.now(), held = [], timer = null, last = 0;  // loading counts as use
  for (const type of ["pointermove", "pointerdown", "keydown", "wheel", "touchstart"])
    addEventListener(type, () => { touched = performance.now(); }, {capture: true, passive: true});
  window.requestAnimationFrame = (callback) => {
    if (performance.now() - touched < active) return frame(callback);
    const id = --last;  // negative: one of the held ones
    held.push([id, callback]);
    timer ??= setTimeout(() => {
      const due = held; held = []; timer = null;
      frame((now) => due.forEach(([, due_callback]) => {
        try { due_callback(now); } catch (error) { reportError(error); }  // as the browser's own: one failing is one
      }));
    }, idle);
    return id;
  };
  window.cancelAnimationFrame = (id) => { if (id < 0) held = held.filter(([h]) => h !== id); else cancel(id); };
})();</script>""".replace("ACTIVE_MS", str(ACTIVE_MS)).replace("IDLE_FRAME_MS", str(IDLE_FRAME_MS))
