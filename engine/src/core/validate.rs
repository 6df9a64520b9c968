//! Input rules shared by the commands: text and map bounds, quantities, products, notifications.

use super::*;

pub(super) fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), EngineError> {
    if required && value.trim().is_empty() {
        return Err(EngineError::invalid(format!("validation failed: {field} is required")));
    }
    if value.len() > max {
        return Err(EngineError::invalid(format!("validation failed: {field} is longer than {max} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(EngineError::invalid(format!("validation failed: {field} contains control characters")));
    }
    Ok(())
}

pub(super) fn check_map(field: &str, map: &[(String, String)]) -> Result<(), EngineError> {
    if map.len() > limits::MAP_ENTRIES_MAX {
        return Err(EngineError::invalid(format!("validation failed: {field} has more than {} entries", limits::MAP_ENTRIES_MAX)));
    }
    for (k, v) in map {
        check_text(field, k, limits::TEXT_SHORT_MAX, true)?;
        check_text(field, v, limits::TEXT_LONG_MAX, false)?;
    }
    Ok(())
}

/// A token is the provider's stand-in for a card; a card number itself is refused, never stored.
pub(super) fn check_token(token: &str) -> Result<(), EngineError> {
    check_text("token", token, limits::TEXT_SHORT_MAX, false)?;
    let digits = token.chars().filter(char::is_ascii_digit).count();
    let card_like = token.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    if card_like && (12..=19).contains(&digits) {
        return Err(EngineError::invalid("validation failed: token must be a provider token, never a card number"));
    }
    Ok(())
}

pub(super) fn check_user(user_id: &str) -> Result<(), EngineError> {
    check_text("user_id", user_id, limits::USER_ID_MAX, true)
}

pub(super) fn check_quantity(quantity: i64, allow_zero: bool) -> Result<(), EngineError> {
    let min = if allow_zero { 0 } else { 1 };
    if quantity < min || quantity > limits::QUANTITY_MAX {
        return Err(EngineError::invalid(format!("validation failed: quantity must be between {min} and {}", limits::QUANTITY_MAX)));
    }
    Ok(())
}

pub(super) fn validate_product(input: &ProductInput, currency: Currency) -> Result<(), EngineError> {
    check_text("name", &input.name, limits::TEXT_SHORT_MAX, true)?;
    check_text("description", &input.description, limits::TEXT_LONG_MAX, false)?;
    check_text("category", &input.category, limits::TEXT_SHORT_MAX, false)?;
    check_text("image_url", &input.image_url, limits::TEXT_LONG_MAX, false)?;
    if input.price < 0 {
        return Err(EngineError::invalid("product price cannot be negative"));
    }
    if input.price > limits::PRICE_MINOR_MAX {
        return Err(EngineError::invalid(format!(
            "validation failed: price above {}",
            crate::money::format_minor(limits::PRICE_MINOR_MAX, currency)
        )));
    }
    if input.stock < 0 {
        return Err(EngineError::invalid("product stock cannot be negative"));
    }
    if input.stock > limits::STOCK_MAX {
        return Err(EngineError::invalid(format!("validation failed: stock above {}", limits::STOCK_MAX)));
    }
    Ok(())
}

pub(crate) fn validate_notification(input: &NotificationInput) -> Result<(), EngineError> {
    check_user(&input.user_id)?;
    check_text("title", &input.title, limits::TEXT_SHORT_MAX, true)?;
    check_text("message", &input.message, limits::TEXT_LONG_MAX, true)?;
    check_text("template_id", &input.template_id, limits::TEXT_SHORT_MAX, false)?;
    check_map("data", &input.data)?;
    if !notify::TYPES.contains(&input.kind.as_str()) {
        return Err(EngineError::invalid(format!("validation failed: type must be one of {}", notify::TYPES.join(", "))));
    }
    if !notify::CHANNELS.contains(&input.channel.as_str()) {
        return Err(EngineError::invalid(format!("validation failed: channel must be one of {}", notify::CHANNELS.join(", "))));
    }
    if !input.priority.is_empty() && !notify::PRIORITIES.contains(&input.priority.as_str()) {
        return Err(EngineError::invalid(format!("validation failed: priority must be one of {}", notify::PRIORITIES.join(", "))));
    }
    Ok(())
}
