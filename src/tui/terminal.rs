//! The terminal, entered and restored: raw mode and the alternate screen, undone by
//! [`Terminal`]'s `Drop` on every exit and by a panic hook on a panic (cf. gitui, bottom).
//! A serial console that reports a 0x0 size gets a fixed 80x24 viewport.

use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{TerminalOptions, Viewport};
use std::io::Stdout;

/// The ratatui terminal on stdout; restores the terminal when dropped.
pub struct Terminal(ratatui::Terminal<CrosstermBackend<Stdout>>);

fn restore() {
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl Terminal {
    /// Enters raw mode and the alternate screen, and installs the panic hook.
    pub fn enter() -> std::io::Result<Terminal> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        let backend = CrosstermBackend::new(std::io::stdout());
        let size = crossterm::terminal::size().unwrap_or((0, 0));
        let t = if size.0 == 0 || size.1 == 0 {
            ratatui::Terminal::with_options(
                backend,
                TerminalOptions {
                    viewport: Viewport::Fixed(Rect::new(0, 0, 80, 24)),
                },
            )
        } else {
            ratatui::Terminal::new(backend)
        };
        match t {
            Ok(t) => Ok(Terminal(t)),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// Leaves the full screen for `f` (a shell), then comes back and redraws everything.
    pub fn suspend<T>(&mut self, f: impl FnOnce() -> T) -> std::io::Result<T> {
        restore();
        let r = f();
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        self.0.clear()?;
        Ok(r)
    }

    /// Forgets what is on the screen, so that the next frame repaints every cell (after a
    /// resize, or kernel messages printed over the menu).
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.0.clear()
    }

    /// Gives the terminal back (normal mode, main screen) before the process ends; dropping
    /// does it again, harmlessly.
    pub fn leave(&mut self) {
        restore();
    }

    /// Draws one frame.
    pub fn draw(&mut self, f: impl FnOnce(&mut ratatui::Frame)) -> std::io::Result<()> {
        self.0.draw(f).map(|_| ())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}
