//! Stored payment methods, on the user's shard: add, make default, delete. A user's methods are one
//! record (`Wallet`), so every change to them, the default included, is one event.

use super::validate::{check_text, check_token, check_user};
use super::*;
use crate::command::PaymentMethodInput;

impl Core {
    pub(super) fn add_payment_method(&mut self, input: PaymentMethodInput, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_method(&input, now)?;
        let mut wallet = self.wallets.get(&input.user_id).cloned().unwrap_or_else(|| Wallet {
            user_id: input.user_id.clone(),
            methods: Vec::new(),
            version: 0,
        });
        if wallet.methods.iter().any(|m| m.provider == input.provider && m.token == input.token) {
            return Err(EngineError::conflict("this payment method is already stored"));
        }
        if wallet.methods.len() >= limits::WALLET_METHODS_MAX {
            return Err(EngineError::invalid(format!(
                "validation failed: at most {} payment methods per user",
                limits::WALLET_METHODS_MAX
            )));
        }
        let is_default = input.is_default || wallet.methods.is_empty();
        if is_default {
            for m in &mut wallet.methods {
                if m.is_default {
                    m.is_default = false;
                    m.updated_at = now;
                }
            }
        }
        let method = PaymentMethod {
            id: self.new_id(now),
            user_id: input.user_id,
            kind: input.kind,
            provider: input.provider,
            token: input.token,
            last_four: input.last_four,
            expiry_month: input.expiry_month,
            expiry_year: input.expiry_year,
            is_default,
            created_at: now,
            updated_at: now,
        };
        wallet.methods.push(method.clone());
        self.emit(Event::WalletPut { wallet }, fx);
        Ok(Reply::PaymentMethod(method))
    }

    pub(super) fn set_default_payment_method(
        &mut self,
        user_id: &str,
        id: &str,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        let mut wallet = self.wallet_with(user_id, id)?;
        for m in &mut wallet.methods {
            let is_default = m.id == id;
            if m.is_default != is_default {
                m.is_default = is_default;
                m.updated_at = now;
            }
        }
        let method = wallet.methods.iter().find(|m| m.id == id).cloned().expect("checked above");
        self.emit(Event::WalletPut { wallet }, fx);
        Ok(Reply::PaymentMethod(method))
    }

    pub(super) fn delete_payment_method(&mut self, user_id: &str, id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        let mut wallet = self.wallet_with(user_id, id)?;
        let at = wallet.methods.iter().position(|m| m.id == id).expect("checked above");
        let gone = wallet.methods.remove(at);
        if gone.is_default
            && let Some(oldest) = wallet.methods.first_mut()
        {
            oldest.is_default = true;
            oldest.updated_at = now;
        }
        self.emit(Event::WalletPut { wallet }, fx);
        Ok(Reply::Deleted { existed: true })
    }

    /// The user's stored method `id`, for a payment that names it.
    pub(super) fn stored_method(&self, user_id: &str, id: &str) -> Result<&PaymentMethod, EngineError> {
        self.wallets.get(user_id).and_then(|w| w.methods.iter().find(|m| m.id == id)).ok_or_else(|| method_not_found(id))
    }

    /// A copy of the user's wallet, if it holds method `id`.
    fn wallet_with(&self, user_id: &str, id: &str) -> Result<Wallet, EngineError> {
        check_user(user_id)?;
        self.stored_method(user_id, id)?;
        Ok(self.wallets[user_id].clone())
    }
}

fn method_not_found(id: &str) -> EngineError {
    EngineError::not_found(format!("payment method not found: {id}"))
}

fn check_method(input: &PaymentMethodInput, now: Micros) -> Result<(), EngineError> {
    check_user(&input.user_id)?;
    if !PAYMENT_METHODS.contains(&input.kind.as_str()) {
        return Err(EngineError::invalid(format!("validation failed: type must be one of {}", PAYMENT_METHODS.join(", "))));
    }
    check_text("provider", &input.provider, limits::TEXT_SHORT_MAX, true)?;
    check_text("token", &input.token, limits::TEXT_SHORT_MAX, true)?;
    check_token(&input.token)?;
    if !(input.last_four.is_empty() || (input.last_four.len() == 4 && input.last_four.bytes().all(|b| b.is_ascii_digit()))) {
        return Err(EngineError::invalid("validation failed: last_four_digits must be 4 digits"));
    }
    match (input.expiry_month, input.expiry_year) {
        (0, 0) => {}
        (month @ 1..=12, year @ 2000..=2999) => {
            let (this_year, this_month) = crate::time::year_month(now);
            if (i64::from(year), i64::from(month)) < (this_year, this_month) {
                return Err(EngineError::invalid("validation failed: the card has expired"));
            }
        }
        _ => {
            return Err(EngineError::invalid(
                "validation failed: expiry_month must be 1-12 and expiry_year a four-digit year, both or neither",
            ));
        }
    }
    Ok(())
}
