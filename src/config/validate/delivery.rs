//! `[delivery]`: the HTTP timeout and when a delivery is given up (attempts, age).

use super::Validator;
use crate::config::raw::RawDelivery;
use crate::config::DeliveryConfig;

impl Validator<'_> {
    pub(super) fn delivery(&mut self, raw: &RawDelivery) -> DeliveryConfig {
        let defaults = DeliveryConfig::default();
        let max_attempts = match &raw.max_attempts {
            Some(n) if (1..=1000).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.p.at(
                    Some(n.span()),
                    "`delivery.max_attempts` must be between 1 and 1000",
                );
                defaults.max_attempts
            }
            None => defaults.max_attempts,
        };
        DeliveryConfig {
            timeout: self.duration(&raw.timeout, "delivery.timeout", defaults.timeout),
            max_attempts,
            max_age: self.duration(&raw.max_age, "delivery.max_age", defaults.max_age),
        }
    }
}
