//! The one font every picture pretext draws uses (DejaVu Sans, embedded), so that plots and
//! image grids look the same on every machine.

use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name text is drawn in once [`register`] has run.
pub const FAMILY: &str = "sans-serif";

/// Makes [`FAMILY`] the embedded font; later calls do nothing.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded file is a valid TrueType font.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}
