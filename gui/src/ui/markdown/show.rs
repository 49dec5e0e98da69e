//! Painting a laid-out message and handling its clicks: links, mentions, Copy buttons and
//! the sideways scrolling of wide code.

use egui::{CursorIcon, Rect, ScrollArea, Sense, Stroke, Ui, UiBuilder, vec2};

use super::doc::Target;
use super::layout::{Body, CODE_PAD};
use super::{CodeLaid, Hot, MdAction, Rendered};

pub fn show(r: &Rendered, ui: &mut Ui) -> Vec<MdAction> {
    let (rect, _) = ui.allocate_exact_size(vec2(r.width, r.height), Sense::hover());
    let mut actions = Vec::new();
    if !ui.is_rect_visible(rect) {
        return actions;
    }
    let painter = ui.painter_at(rect);
    let bar_color = ui.visuals().widgets.noninteractive.bg_stroke.color;
    for (i, b) in r.blocks.iter().enumerate() {
        let origin = rect.min.to_vec2();
        let block = b.rect.translate(origin);
        if !ui.is_rect_visible(block.expand(2.0)) {
            continue;
        }
        for &(x, top, bottom) in &b.bars {
            let x = rect.left() + x;
            painter.line_segment(
                [egui::pos2(x, rect.top() + top), egui::pos2(x, rect.top() + bottom)],
                Stroke::new(3.0, bar_color),
            );
        }
        if let Some((pos, g)) = &b.marker {
            painter.galley(rect.min + pos.to_vec2(), g.clone(), ui.visuals().text_color());
        }
        match &b.body {
            Body::Text { galley, hot } => {
                painter.galley(block.min, galley.clone(), ui.visuals().text_color());
                // The text as a label node, as a plain label has: screen readers read
                // it, tests find it. Links are added after, on top of it.
                let text_rect = Rect::from_min_size(block.min, galley.size()).intersect(block);
                let resp = ui.interact(text_rect, ui.make_persistent_id(("md-text", i)), Sense::hover());
                resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, galley.text()));
                hot_areas(ui, block, hot, i, &mut actions);
            }
            Body::Code(c) => code_block(ui, block, c, i),
            Body::Rule => {
                let y = block.center().y;
                painter.hline(block.x_range(), y, ui.visuals().widgets.noninteractive.bg_stroke);
            }
        }
    }
    actions
}

/// Links and mentions: a pointing hand, the URL on hover, and the click.
fn hot_areas(ui: &mut Ui, block: Rect, hot: &[Hot], block_index: usize, actions: &mut Vec<MdAction>) {
    for (j, h) in hot.iter().enumerate() {
        for (k, r) in h.rects.iter().enumerate() {
            let area = r.translate(block.min.to_vec2()).intersect(ui.clip_rect());
            if !area.is_positive() {
                continue;
            }
            let id = ui.make_persistent_id(("md-hot", block_index, j, k));
            let resp = ui.interact(area, id, Sense::click()).on_hover_cursor(CursorIcon::PointingHand);
            let label = h.label.clone();
            resp.ctx.accesskit_node_builder(resp.id, |node| {
                node.set_role(egui::accesskit::Role::Link);
                node.set_label(label);
            });
            match &h.target {
                Target::Url(url) => {
                    if resp.hovered() {
                        ui.painter().hline(
                            area.x_range(),
                            area.bottom() - 1.0,
                            Stroke::new(1.0, ui.visuals().hyperlink_color),
                        );
                    }
                    let resp = resp.on_hover_text(url);
                    if resp.clicked() || resp.middle_clicked() {
                        let new_tab = resp.middle_clicked() || ui.input(|i| i.modifiers.any());
                        ui.ctx().open_url(egui::OpenUrl { url: url.clone(), new_tab });
                        actions.push(MdAction::OpenUrl(url.clone()));
                    }
                }
                Target::Mention(name) => {
                    if resp.clicked() {
                        actions.push(MdAction::Mention(name.clone()));
                    }
                }
            }
        }
    }
}

/// The frame, the language and Copy header, and the code in a sideways scroll area.
fn code_block(ui: &mut Ui, block: Rect, c: &CodeLaid, index: usize) {
    let v = ui.visuals();
    let fill = if v.dark_mode { v.extreme_bg_color } else { v.faint_bg_color };
    let stroke = v.widgets.noninteractive.bg_stroke;
    ui.painter().rect(block, 4.0, fill, stroke, egui::StrokeKind::Inside);
    let header = Rect::from_min_size(
        block.min + vec2(CODE_PAD, CODE_PAD * 0.5),
        vec2(block.width() - 2.0 * CODE_PAD, c.header_h),
    );
    if let Some(lang) = &c.lang {
        let pos = egui::pos2(header.left(), header.center().y - lang.size().y / 2.0);
        ui.painter().galley(pos, lang.clone(), v.weak_text_color());
    }
    let copy = ui
        .scope_builder(
            UiBuilder::new().max_rect(header).layout(egui::Layout::right_to_left(egui::Align::Center)),
            |ui| {
                ui.add(
                    egui::Button::new(egui::RichText::new("Copy").small())
                        .wrap_mode(egui::TextWrapMode::Extend),
                )
            },
        )
        .inner
        .on_hover_text("Copy the code");
    if copy.clicked() {
        ui.ctx().copy_text(c.code.clone());
    }
    let code_size = vec2(block.width() - 2.0 * CODE_PAD, c.galley.size().y + c.scroll_room);
    let code_rect = Rect::from_min_size(block.min + c.code_offset, code_size);
    let mut child = ui.new_child(UiBuilder::new().max_rect(code_rect).id_salt(("md-code", index)));
    child.set_clip_rect(code_rect.intersect(ui.clip_rect()));
    ScrollArea::horizontal().id_salt(("md-code-scroll", index)).auto_shrink([false, false]).show(
        &mut child,
        |ui| {
            let (r, resp) = ui.allocate_exact_size(c.galley.size(), Sense::hover());
            ui.painter().galley(r.min, c.galley.clone(), ui.visuals().text_color());
            // Screen readers read the code; tests find it (and see it scroll) by this label.
            let label = c.lang.as_ref().map_or_else(|| "code".to_owned(), |l| format!("{} code", l.text()));
            let text = c.galley.text().to_owned();
            resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Code, true, &label));
            resp.ctx.accesskit_node_builder(resp.id, |node| node.set_value(text));
        },
    );
    if let Some(more) = &c.more {
        let pos = code_rect.left_bottom();
        ui.painter().galley(pos, more.clone(), ui.visuals().weak_text_color());
    }
}
