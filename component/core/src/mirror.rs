//! The mirror: a word reversed, with the case of every letter swapped.
//!
//! The word is reversed by extended grapheme clusters (what a reader sees as one character),
//! so combining marks stay on their letter and emoji sequences stay whole. Case is swapped per
//! `char` with Unicode's full mappings, which may change the length: `ß` becomes `SS`.

use unicode_segmentation::UnicodeSegmentation;

pub fn mirror(word: &str) -> String {
    let mut mirrored = String::with_capacity(word.len());
    for c in word.graphemes(true).rev().flat_map(str::chars) {
        // Anything without case (digits, marks, emoji, titlecase letters such as `ǅ`) is kept.
        if c.is_lowercase() {
            mirrored.extend(c.to_uppercase());
        } else if c.is_uppercase() {
            mirrored.extend(c.to_lowercase());
        } else {
            mirrored.push(c);
        }
    }
    mirrored
}

#[cfg(test)]
mod tests {
    use super::mirror;

    #[test]
    fn reverses_and_swaps_the_case_of_ascii() {
        assert_eq!(mirror("abcABC123987"), "789321cbaCBA");
        assert_eq!(mirror("Hello, World!"), "!DLROw ,OLLEh");
    }

    #[test]
    fn keeps_combining_marks_on_their_letter() {
        // e + COMBINING ACUTE ACCENT, then a precomposed é.
        assert_eq!(mirror("e\u{301}x\u{e9}"), "\u{c9}XE\u{301}");
        // Devanagari: the vowel sign stays after its consonant.
        assert_eq!(mirror("\u{915}\u{93f}\u{924}"), "\u{924}\u{915}\u{93f}");
    }

    #[test]
    fn keeps_emoji_sequences_whole() {
        let family = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}"; // man ZWJ woman ZWJ girl
        assert_eq!(mirror(&format!("a{family}B")), format!("b{family}A"));
        let (france, germany) = ("\u{1f1eb}\u{1f1f7}", "\u{1f1e9}\u{1f1ea}");
        assert_eq!(
            mirror(&format!("{france}{germany}")),
            format!("{germany}{france}")
        );
        let waving_dark = "\u{1f44b}\u{1f3ff}"; // waving hand + skin tone modifier
        assert_eq!(
            mirror(&format!("x{waving_dark}")),
            format!("{waving_dark}X")
        );
    }

    #[test]
    fn handles_other_scripts() {
        assert_eq!(mirror("Αθήνα"), "ΑΝΉΘα");
        assert_eq!(mirror("Привет"), "ТЕВИРп");
        assert_eq!(mirror("你好世界"), "界世好你");
        assert_eq!(mirror("שלום"), "םולש");
    }

    #[test]
    fn case_mappings_may_change_the_length() {
        assert_eq!(mirror("straße"), "ESSARTS");
        assert_eq!(mirror("İ"), "i\u{307}");
    }

    #[test]
    fn keeps_titlecase_letters_digits_and_spaces() {
        assert_eq!(mirror("\u{1c5}a 1"), "1 A\u{1c5}");
    }

    #[test]
    fn the_empty_word_mirrors_to_itself() {
        assert_eq!(mirror(""), "");
    }
}
