//! A small deterministic generator of valid customers for property tests:
//! the same seed gives the same cases, so a failure can be replayed.

use super::customer::{Address, CustomerData, Locale};

pub struct Gen(u64);

/// Letters a Finnish registry meets, and some it should survive.
const ALPHABET: &[char] = &[
    'a', 'b', 'k', 'v', 'w', 'z', 'A', 'V', 'W', 'Z', 'å', 'ä', 'ö', 'Å', 'Ä', 'Ö', 'é', 'ü', 'ß',
    'ø', '-', '\'', '.', ',', ' ', '1', '9', 'ж', '李', '🙂', '"', '\\', '\n',
];

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// xorshift64*: plenty for test cases.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A trimmed, non-empty string of at most `max` characters.
    pub fn text(&mut self, max: u64) -> String {
        loop {
            let len = 1 + self.below(max);
            let s: String = (0..len)
                .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
                .collect();
            let trimmed = s.trim();
            if !trimmed.is_empty() {
                return trimmed.to_owned();
            }
        }
    }

    fn required(&mut self) -> String {
        if self.below(10) == 0 {
            "-".to_owned()
        } else {
            self.text(30)
        }
    }

    fn optional(&mut self) -> Option<String> {
        match self.below(3) {
            0 => None,
            1 => Some(String::new()),
            _ => Some(self.text(30)),
        }
    }

    pub fn customer(&mut self) -> CustomerData {
        let local: String = (0..1 + self.below(12))
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect();
        let countries = ["FI", "SE", "AX", "EE", "DE", "-"];
        CustomerData {
            email: format!("{local}@example.fi"),
            locale: if self.below(2) == 0 {
                Locale::FiFi
            } else {
                Locale::EnUs
            },
            address: Address {
                firstname: self.required(),
                lastname: self.required(),
                company: self.optional(),
                company_id: self.optional(),
                address: self.optional(),
                city: self.required(),
                postcode: self.required(),
                phone: self.optional(),
                country: countries[self.below(countries.len() as u64) as usize].to_owned(),
            },
        }
    }
}
